import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from '../../policies/duration';
import { editDistance, nearest } from '../../policies/suggest';
import { canonicalIp, cidrContains, parseCidr, pickClusterIp } from '../../policies/cidr';
import { toPercentages } from '../../policies/imports';
import { lineDiff } from '../../policies/diff';

test('durations parse to milliseconds and format back', () => {
  const cases: Array<[string, number | RegExp]> = [
    ['250ms', 250], ['5s', 5000], ['1m', 60_000], ['1h30m', 5_400_000], ['1.5s', 1500], ['2h', 7_200_000],
    ['-5s', /negative/], ['0s', /zero/], ['5', /not a duration/], ['5 s', /not a duration/], ['1.5ms', /whole number/], ['5d', /not a duration/],
  ];
  for (const [text, want] of cases) {
    const r = parseDuration(text);
    if (typeof want === 'number') assert.deepEqual(r, { ms: want }, text);
    else assert.match('error' in r ? r.error : '', want, text);
  }
  for (const ms of [1, 250, 1000, 1500, 60_000, 90_000, 3_600_000, 5_400_000]) {
    assert.deepEqual(parseDuration(formatDuration(ms)), { ms }, String(ms));
  }
  assert.equal(formatDuration(120_000), '2m');
});

test('did-you-mean finds near field names and refuses far ones', () => {
  assert.equal(editDistance('wieght', 'weight'), 1);
  assert.equal(nearest('wieght', ['subset', 'weight']), 'weight');
  assert.equal(nearest('timout', ['timeout', 'retries']), 'timeout');
  assert.equal(nearest('LEAST_REQEST', ['ROUND_ROBIN', 'LEAST_REQUEST']), 'LEAST_REQUEST');
  assert.equal(nearest('zzz', ['weight', 'subset']), undefined);
});

test('cluster IP arithmetic: CIDR parsing, membership, allocation', () => {
  const c = parseCidr('10.96.0.0/16');
  assert.equal(c.text, '10.96.0.0/16');
  assert.ok(cidrContains(c, '10.96.255.254'));
  assert.ok(!cidrContains(c, '10.97.0.1'));
  assert.ok(!cidrContains(c, 'fd00::1'));
  const ip = pickClusterIp(c, 'default/reviews', () => false);
  assert.equal(ip, pickClusterIp(c, 'default/reviews', () => false), 'same owner, same first choice');
  assert.ok(ip && cidrContains(c, ip));
  // A /30 has two usable addresses; a third owner finds none.
  const small = parseCidr('192.168.7.0/30');
  const taken = new Set<string>();
  for (const owner of ['a/a', 'b/b']) { const got = pickClusterIp(small, owner, (x) => taken.has(x))!; taken.add(got); }
  assert.deepEqual([...taken].sort(), ['192.168.7.1', '192.168.7.2']);
  assert.equal(pickClusterIp(small, 'c/c', (x) => taken.has(x)), undefined);
  const v6 = parseCidr('fd00:10:96::/112');
  assert.ok(cidrContains(v6, pickClusterIp(v6, 'default/x', () => false)!));
  assert.equal(canonicalIp('fd00:0:0:0::1'), 'fd00::1');
  assert.throws(() => parseCidr('10.96.0.0'), /not a CIDR/);
  assert.throws(() => parseCidr('10.96.0.0/32'), /too small/);
});

test('relative weights become percentages summing to 100', () => {
  const cases: Array<[number[], number[] | undefined]> = [
    [[900, 100], [90, 10]], [[1, 1], [50, 50]], [[1, 2], [33, 67]], [[1, 1, 1], [34, 33, 33]], [[3, 1], [75, 25]], [[0, 5], [0, 100]], [[0, 0], undefined],
  ];
  for (const [w, want] of cases) assert.deepEqual(toPercentages(w), want, w.join(','));
});

test('line diff marks removed and added lines', () => {
  assert.deepEqual(lineDiff('a\nb\nc', 'a\nB\nc'), ['  a', '- b', '+ B', '  c']);
});
