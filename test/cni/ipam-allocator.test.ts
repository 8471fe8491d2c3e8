import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type Range, capacity, formatIp, isAllocatable, nextFree, parseCidr, parseIp, usableSpan,
} from '../../cni/ipam/allocator';

const v4 = (s: string): bigint => parseIp(s)!.value;
const v6 = (s: string): bigint => parseIp(s)!.value;
function range(subnet: string, start?: string, end?: string, gateway?: string): Range {
  const c = parseCidr(subnet)!.cidr;
  const span = usableSpan(c);
  return {
    subnet: c,
    start: start ? parseIp(start)!.value : span.start,
    end: end ? parseIp(end)!.value : span.end,
    gateway: gateway ? parseIp(gateway)!.value : span.start,
  };
}

test('parseIp accepts canonical addresses and rejects the rest', () => {
  const cases: Array<[string, string | undefined]> = [
    ['10.0.0.1', '10.0.0.1'],
    ['255.255.255.255', '255.255.255.255'],
    ['fd00::1', 'fd00::1'],
    ['FD00:0:0::0001', 'fd00::1'],
    ['10.0.0.256', undefined],
    ['10.0.0', undefined],
    ['10.0.0.1/24', undefined],
    ['fe80::1%eth0', undefined],
    ['', undefined],
    ['banana', undefined],
  ];
  for (const [input, want] of cases) {
    const ip = parseIp(input);
    assert.equal(ip ? formatIp(ip) : undefined, want, input);
  }
});

test('parseCidr computes the network and rejects bad prefixes', () => {
  const cases: Array<[string, string | undefined]> = [
    ['10.1.2.3/24', '10.1.2.0/24'],
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['fd00:1::5/64', 'fd00:1::/64'],
    ['10.0.0.0/33', undefined],
    ['fd00::/129', undefined],
    ['10.0.0.0', undefined],
    ['10.0.0.0/', undefined],
    ['10.0.0.0/-1', undefined],
  ];
  for (const [input, want] of cases) {
    const p = parseCidr(input);
    assert.equal(p ? `${formatIp({ family: p.cidr.family, value: p.cidr.network })}/${p.cidr.prefix}` : undefined, want, input);
  }
});

test('usableSpan excludes network and IPv4 broadcast', () => {
  const cases: Array<[string, string, string]> = [
    ['10.0.0.0/24', '10.0.0.1', '10.0.0.254'],
    ['10.0.0.0/30', '10.0.0.1', '10.0.0.2'],
    ['fd00::/120', 'fd00::1', 'fd00::ff'],
  ];
  for (const [cidr, first, last] of cases) {
    const c = parseCidr(cidr)!.cidr;
    const s = usableSpan(c);
    assert.equal(formatIp({ family: c.family, value: s.start }), first, cidr);
    assert.equal(formatIp({ family: c.family, value: s.end }), last, cidr);
  }
  const tiny = usableSpan(parseCidr('10.0.0.0/31')!.cidr);
  assert.ok(tiny.start > tiny.end, '/31 has no usable address');
});

test('nextFree: table of searches', () => {
  const r24 = range('10.0.0.0/24');
  const small = range('10.0.0.0/24', '10.0.0.10', '10.0.0.12');
  const two = [range('10.0.0.0/24', '10.0.0.10', '10.0.0.11'), range('10.0.1.0/24', '10.0.1.20', '10.0.1.21', '10.0.1.1')];
  const cases: Array<{ name: string; set: Range[]; taken: string[]; after?: string; want: string | undefined }> = [
    { name: 'empty range starts after the gateway', set: [r24], taken: [], want: '10.0.0.2' },
    { name: 'skips taken', set: [r24], taken: ['10.0.0.2', '10.0.0.3'], want: '10.0.0.4' },
    { name: 'resumes after the last reserved', set: [r24], taken: ['10.0.0.2'], after: '10.0.0.7', want: '10.0.0.8' },
    { name: 'wraps around at the end', set: [r24], taken: ['10.0.0.2'], after: '10.0.0.254', want: '10.0.0.3' },
    { name: 'never the broadcast', set: [r24], taken: [], after: '10.0.0.253', want: '10.0.0.254' },
    { name: 'explicit range start', set: [small], taken: [], want: '10.0.0.10' },
    { name: 'explicit range full', set: [small], taken: ['10.0.0.10', '10.0.0.11', '10.0.0.12'], want: undefined },
    { name: 'second range of a set', set: two, taken: ['10.0.0.10', '10.0.0.11'], want: '10.0.1.20' },
    { name: 'wraps from the last range to the first', set: two, taken: ['10.0.1.20'], after: '10.0.1.21', want: '10.0.0.10' },
    { name: 'after outside every range starts at the top', set: two, taken: [], after: '192.168.0.1', want: '10.0.0.10' },
    { name: 'whole set full', set: two, taken: ['10.0.0.10', '10.0.0.11', '10.0.1.20', '10.0.1.21'], want: undefined },
  ];
  for (const c of cases) {
    const got = nextFree(c.set, new Set(c.taken.map(v4)), c.after ? v4(c.after) : undefined);
    assert.equal(got === undefined ? undefined : formatIp({ family: 4, value: got }), c.want, c.name);
  }
});

test('nextFree: IPv6 and gateway inside a custom range', () => {
  const set = [range('fd00::/64', 'fd00::1', 'fd00::3', 'fd00::2')];
  assert.equal(capacity(set), 2n);
  assert.equal(formatIp({ family: 6, value: nextFree(set, new Set([v6('fd00::1')]))! }), 'fd00::3');
  assert.equal(nextFree(set, new Set([v6('fd00::1'), v6('fd00::3')])), undefined);
  assert.equal(isAllocatable(set, parseIp('fd00::2')!), false, 'gateway is not allocatable');
  assert.equal(isAllocatable(set, parseIp('10.0.0.1')!), false, 'other family');
});

test('nextFree decides exhaustion of a huge range by counting, not scanning', () => {
  // A /64 is never scanned end to end: one free address is found at once.
  const set = [range('fd00::/64')];
  const taken = new Set<bigint>();
  for (let i = 2n; i < 1002n; i++) taken.add(set[0].subnet.network + i);
  assert.equal(nextFree(set, taken), set[0].subnet.network + 1002n);
  // An exhausted /16 answers with no address.
  const r16 = [range('10.9.0.0/22')];
  const all = new Set<bigint>();
  for (let v = r16[0].start; v <= r16[0].end; v++) if (v !== r16[0].gateway) all.add(v);
  assert.equal(nextFree(r16, all), undefined);
});
