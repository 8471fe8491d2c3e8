import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePrometheusText, MetricsParseError } from '../../canary/prom';
import { counterDeltas, histogramQuantile, serviceMatcher, trafficStats } from '../../canary/series';
import type { Scrape } from '../../canary/source';
import { FakeMesh } from './fake-mesh';

test('parsePrometheusText reads names, escaped labels, special values and skips comments', () => {
  const s = parsePrometheusText([
    '# HELP x_total a counter',
    '# TYPE x_total counter',
    'x_total{a="1",b="q\\"uo\\\\te\\n"} 42',
    'y 3.5e2 1700000000000',
    'z{le="+Inf"} +Inf',
    'w{} NaN',
    'v Nan',
    'u -inf',
    '',
  ].join('\n'));
  assert.deepEqual(s[0], { name: 'x_total', labels: { a: '1', b: 'q"uo\\te\n' }, value: 42 });
  assert.deepEqual(s[1], { name: 'y', labels: {}, value: 350 });
  assert.equal(s[2].value, Infinity);
  assert.equal(s[2].labels.le, '+Inf');
  assert.ok(Number.isNaN(s[3].value));
  assert.ok(Number.isNaN(s[4].value), 'prom-client prints an empty gauge as "Nan"');
  assert.equal(s[5].value, -Infinity);
});

for (const [text, re] of [
  ['x{a="1"', /t:1: unterminated|t:1: expected/],
  ['x{a=1} 2', /t:1: expected ="value" after label a/],
  ['ok 1\nx 1two', /t:2: bad value "1two" for x/],
  ['x', /t:1: missing value for x/],
  ['{a="b"} 1', /t:1: expected a metric name/],
] as const) {
  test(`parsePrometheusText rejects ${JSON.stringify(text)} with its line`, () => {
    assert.throws(() => parsePrometheusText(text, 't'), (e: unknown) => e instanceof MetricsParseError && re.test(e.message));
  });
}

test('histogramQuantile interpolates inside the bucket and clamps to the largest finite bound', () => {
  const b = [{ le: 0.1, count: 50 }, { le: 0.2, count: 100 }, { le: Infinity, count: 100 }];
  assert.equal(histogramQuantile(0.5, b), 0.1);
  assert.ok(Math.abs(histogramQuantile(0.99, b)! - 0.198) < 1e-9);
  assert.equal(histogramQuantile(0.99, [{ le: 0.1, count: 0 }, { le: Infinity, count: 0 }]), null);
  assert.equal(histogramQuantile(0.99, [{ le: 1, count: 1 }, { le: Infinity, count: 10 }]), 1);
});

const sc = (at: number, targets: Record<string, Array<[string, Record<string, string>, number]>>): Scrape => ({
  at,
  targets: Object.entries(targets).map(([target, rows]) => ({ target, samples: rows.map(([name, labels, value]) => ({ name, labels, value })) })),
});

test('counterDeltas: per target, new series count from zero, resets restart, unknown targets count nothing', () => {
  const prev = sc(0, { a: [['c', { k: '1' }, 10]], b: [['c', { k: '1' }, 100]] });
  const cur = sc(1, { a: [['c', { k: '1' }, 15], ['c', { k: '2' }, 3]], b: [['c', { k: '1' }, 4]], fresh: [['c', { k: '1' }, 1000]] });
  const d = counterDeltas(prev, cur, 'c').map((x) => `${x.target}/${x.labels.k}=${x.value}`).sort();
  assert.deepEqual(d, ['a/1=5', 'a/2=3', 'b/1=4', 'fresh/1=0']);
});

test('serviceMatcher accepts name, name.ns and name.ns.svc forms of the right namespace only', () => {
  const m = serviceMatcher('reviews', 'shop');
  assert.ok(m('reviews.shop'));
  assert.ok(m('reviews'));
  assert.ok(m('reviews.shop.svc.cluster.local'));
  assert.ok(!m('reviews.default'));
  assert.ok(!m('ratings.shop'));
  assert.ok(serviceMatcher('reviews.default', 'x')('reviews.default'));
});

test('trafficStats from real prom-client exposition: success rate and p99 over the window', async () => {
  const mesh = new FakeMesh();
  const fe = mesh.sidecar('frontend');
  let t = 0;
  const src = mesh.source(() => t);
  fe.call('reviews.default', 'v2', 10, 0.02);
  const prev = await src.scrape();
  fe.call('reviews.default', 'v2', 95, 0.02);
  fe.call('reviews.default', 'v2', 5, 0.02, 503);
  fe.call('reviews.default', 'v2', 1, 3);
  fe.call('reviews.default', 'v1', 50, 0.001);
  t = 1000;
  const cur = await src.scrape();
  const v2 = trafficStats(prev, cur, (l) => l.destination_subset === 'v2');
  assert.equal(v2.requests, 101);
  assert.equal(v2.failures, 5);
  assert.ok(Math.abs(v2.successRatePercent! - 9600 / 101) < 1e-9);
  // 100 of 101 observations at 20ms (bucket 10..25ms), the 99th percentile sits there.
  assert.ok(v2.p99Ms! > 10 && v2.p99Ms! <= 25, `p99 ${v2.p99Ms}`);
  const v1 = trafficStats(prev, cur, (l) => l.destination_subset === 'v1');
  assert.equal(v1.requests, 50);
  assert.equal(v1.successRatePercent, 100);
});
