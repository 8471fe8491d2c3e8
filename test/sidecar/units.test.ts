/**
 * Pure parts of the sidecar, table-driven and seeded: balancers, outlier
 * ejection limits, interception rules, endpoint files, the store endpoint
 * source (with the in-memory store).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createBalancer } from '../../sidecar/balancers';
import { Endpoint } from '../../sidecar/endpoint';
import { buildUpstream, ServiceState, defaultPolicy } from '../../sidecar/catalog';
import { OutlierDetector, type Every } from '../../sidecar/outlier';
import { interceptionRules } from '../../sidecar/intercept';
import { parseEndpoints, storeEndpointSource, SidecarConfigError } from '../../sidecar/sources';
import { createMemoryStore } from '../../store/memory';
import { keys } from '../../store/keys';
import type { EndpointRecord } from '../../store/records';
import { eventually } from '../helpers/lab';
import { Counter, Histogram, Registry } from 'prom-client';
import { createMetrics } from '../../sidecar/metrics';
import { seeded } from '../helpers/seeded';

const eps = (n: number, weights: number[] = []) => Array.from({ length: n }, (_, i) => new Endpoint(`10.0.0.${i + 1}`, 80, {}, weights[i] ?? 1, `p${i}`));
const count = (picks: Array<Endpoint | undefined>) => {
  const m = new Map<string, number>();
  for (const p of picks) m.set(p!.key, (m.get(p!.key) ?? 0) + 1);
  return m;
};

test('round robin: even over equal weights, proportional over weights, skips unavailable endpoints', () => {
  const e = eps(3);
  const rr = createBalancer({ type: 'round-robin' }, e);
  const even = count(Array.from({ length: 300 }, () => rr.pick({ now: 0 })));
  assert.deepEqual(e.map((x) => even.get(x.key)), [100, 100, 100]);
  const w = eps(3, [1, 2, 3]);
  const wrr = createBalancer({ type: 'round-robin' }, w);
  const weighted = count(Array.from({ length: 600 }, () => wrr.pick({ now: 0 })));
  assert.deepEqual(w.map((x) => weighted.get(x.key)), [100, 200, 300]);
  e[1].gate = 'open';
  assert.ok(Array.from({ length: 50 }, () => rr.pick({ now: 0 })).every((p) => p !== e[1]));
});

test('retries avoid endpoints already tried unless none other is left', () => {
  const e = eps(2);
  for (const type of ['round-robin', 'random', 'least-request', 'ewma'] as const) {
    const b = createBalancer(type === 'least-request' ? { type, choiceCount: 2 } : type === 'ewma' ? { type, decayMs: 1000 } : { type }, e, seeded(1));
    for (let i = 0; i < 20; i++) assert.equal(b.pick({ now: 0, exclude: new Set([e[0]]) }), e[1], type);
    e[1].ejectedUntil = 10;
    assert.equal(b.pick({ now: 0, exclude: new Set([e[0]]) }), e[0], `${type}: falls back to the tried one`);
    e[1].ejectedUntil = 0;
  }
});

test('least request (power of two choices) steers away from a busy endpoint', () => {
  const e = eps(4);
  e[0].inflight = 50;
  const b = createBalancer({ type: 'least-request', choiceCount: 2 }, e, seeded(7));
  const c = count(Array.from({ length: 1000 }, () => b.pick({ now: 0 })));
  assert.ok((c.get(e[0].key) ?? 0) < 10, `busy endpoint picked ${c.get(e[0].key)} times`);
});

test('ewma prefers the fast endpoint', () => {
  const e = eps(2);
  e[0].observeLatency(200, 1000, 1);
  e[1].observeLatency(2, 1000, 1);
  const b = createBalancer({ type: 'ewma', decayMs: 1000 }, e, seeded(3));
  const c = count(Array.from({ length: 200 }, () => b.pick({ now: 0 })));
  assert.ok((c.get(e[1].key) ?? 0) > 150);
});

test('ring hash: a key stays on one endpoint; removing an endpoint moves only its keys', () => {
  const all = eps(5);
  const ring = createBalancer({ type: 'ring-hash', hashOn: { header: 'x' }, minRingSize: 1024 }, all, seeded(1));
  const fewer = createBalancer({ type: 'ring-hash', hashOn: { header: 'x' }, minRingSize: 1024 }, all.slice(0, 4), seeded(1));
  let moved = 0;
  let owned = 0;
  const spread = new Map<string, number>();
  for (let k = 0; k < 2000; k++) {
    const key = `user-${k}`;
    const a = ring.pick({ now: 0, hashKey: key })!;
    assert.equal(ring.pick({ now: 0, hashKey: key }), a, 'sticky');
    spread.set(a.key, (spread.get(a.key) ?? 0) + 1);
    const b = fewer.pick({ now: 0, hashKey: key })!;
    if (a === all[4]) owned++;
    else if (a !== b) moved++;
  }
  assert.equal(moved, 0, 'keys of the remaining endpoints did not move');
  assert.ok(owned > 0);
  for (const n of spread.values()) assert.ok(n > 200 && n < 700, `uneven ring: ${[...spread.values()]}`);
});

/** A fake `every`: sweeps run only when the test calls `tick`, on the test's clock. */
function fakeEvery() {
  const running = new Set<{ ms: number; fn: () => void }>();
  const every: Every = (ms, fn) => {
    const t = { ms, fn };
    running.add(t);
    return () => { running.delete(t); };
  };
  return { every, running, tick: () => { for (const t of [...running]) t.fn(); } };
}

const outlierUpstream = (name: string, e: Endpoint[]) =>
  buildUpstream(name, { port: 80, targetPort: 80, protocol: 'TCP' }, defaultPolicy(name), e, new ServiceState(), seeded(1));

test('outlier detection ejects after consecutive errors, for longer each time, never beyond max percent', () => {
  const e = eps(4);
  let now = 1000;
  const up = outlierUpstream('svc.default', e);
  const timers = fakeEvery();
  const od = new OutlierDetector(() => now, undefined, timers.every);
  const spec = { consecutive5xxErrors: 3, intervalMs: 1000, baseEjectionTimeMs: 100, maxEjectionPercent: 50 };
  for (let i = 0; i < 2; i++) od.record(up, e[0], spec, 500);
  assert.equal(e[0].ejected(), false);
  od.record(up, e[0], spec, 500);
  assert.equal(e[0].ejectedUntil, 1100);
  for (let i = 0; i < 3; i++) od.record(up, e[1], spec, 503);
  assert.equal(e[1].ejected(), true);
  for (let i = 0; i < 3; i++) od.record(up, e[2], spec, 502);
  assert.equal(e[2].ejected(), false, 'a third ejection would pass 50%');
  now = 2000;
  timers.tick();
  assert.equal(e[0].ejected(), false, 'the sweep returned it');
  for (let i = 0; i < 3; i++) od.record(up, e[0], spec, 500);
  assert.equal(e[0].ejectedUntil, 2200, 'second ejection lasts twice as long');
  od.record(up, e[3], spec, 500);
  od.record(up, e[3], spec, 200);
  od.record(up, e[3], spec, 500);
  assert.equal(e[3].consecutive5xx, 1, 'a success resets the count');
  od.stop();
});

test('outlier interval: an ejection ends at the first sweep after its time, the multiplier decays per interval in service, the sweep stops when idle', async () => {
  const e = eps(4);
  let now = 1000;
  const up = outlierUpstream('svc.default', e);
  const timers = fakeEvery();
  const m = createMetrics({ workload: 'web', namespace: 'shop' }, { defaultMetrics: false });
  const gauge = async () => (await m.registry.getSingleMetric('meshwork_outlier_ejected')!.get()).values.find((v) => v.labels.endpoint === e[0].key)?.value;
  const od = new OutlierDetector(() => now, m, timers.every);
  const spec = { consecutive5xxErrors: 1, intervalMs: 1000, baseEjectionTimeMs: 300, maxEjectionPercent: 100 };
  for (let i = 0; i < 50; i++) od.record(up, e[0], spec, 200);
  assert.equal(timers.running.size, 0, 'successes start no timer');

  od.record(up, e[0], spec, 500);
  assert.deepEqual([e[0].ejectedUntil, e[0].ejections, timers.running.size], [1300, 1, 1]);
  assert.equal([...timers.running][0].ms, 1000, 'the sweep runs every intervalMs');
  assert.equal(await gauge(), 1);
  now = 1500;
  assert.equal(e[0].available(now), false, 'past its time but not swept: still out');
  now = 2000;
  timers.tick();
  assert.equal(e[0].available(now), true, 'back at the first sweep after its time');
  assert.equal(await gauge(), 0);
  assert.equal(e[0].ejections, 1, 'it was out during that interval: no decay yet');
  now = 3000;
  timers.tick();
  assert.deepEqual([e[0].ejections, timers.running.size], [0, 0], 'a whole interval in service takes one off; nothing left, the sweep stops');
  od.record(up, e[0], spec, 500);
  assert.deepEqual([e[0].ejectedUntil, timers.running.size], [3300, 1], 'ejected for the base time again');

  // Ejected again as soon as it is back: the multiplier grows, then decays one per clean interval.
  now = 4000;
  timers.tick();
  od.record(up, e[0], spec, 500);
  assert.deepEqual([e[0].ejectedUntil, e[0].ejections], [4600, 2]);
  const left: number[] = [];
  for (now = 5000; now <= 7000; now += 1000) {
    timers.tick();
    left.push(e[0].ejections);
  }
  assert.deepEqual(left, [2, 1, 0]);
  assert.equal(timers.running.size, 0);

  // One sweep per service, whatever the number of ejected endpoints; a new interval replaces the timer.
  od.record(up, e[1], spec, 500);
  od.record(up, e[2], spec, 500);
  assert.equal(timers.running.size, 1);
  od.record(up, e[3], spec, 500);
  od.record(up, e[0], { ...spec, intervalMs: 500 }, 500);
  assert.deepEqual([...timers.running].map((t) => t.ms), [500]);
  od.stop();
  assert.equal(timers.running.size, 0, 'stop clears the timers');
  assert.ok(e.every((x) => x.available(now) && x.ejections === 0), 'and returns the endpoints nothing would sweep any more');
});

test('outlier interval: an endpoint shared by two services is swept by one of them only', () => {
  const e = eps(2);
  let now = 1000;
  const a = outlierUpstream('a.default', e);
  const b = outlierUpstream('b.default', e);
  const timers = fakeEvery();
  const od = new OutlierDetector(() => now, undefined, timers.every);
  const spec = { consecutive5xxErrors: 1, intervalMs: 1000, baseEjectionTimeMs: 100, maxEjectionPercent: 100 };
  od.record(a, e[0], spec, 500);
  now = 2000;
  timers.tick();
  od.record(b, e[0], spec, 500);
  assert.equal(timers.running.size, 1, "a's sweep handed the endpoint over and stopped");
  assert.equal(e[0].ejections, 2);
  now = 3000;
  timers.tick();
  now = 4000;
  timers.tick();
  assert.equal(e[0].ejections, 1, 'decays once per interval, not once per service');
  od.stop();
});

test('interception rules redirect TCP and exclude the sidecar, loopback, DNS and listed ports and CIDRs', () => {
  const r = interceptionRules({ outboundPort: 15001, inboundPort: 15006, sidecarGid: 1337, excludeInboundPorts: [15090], excludeOutboundPorts: [5432], excludeOutboundCidrs: ['10.0.0.0/8', 'fd00::/8'] });
  for (const line of [
    'meta skgid 1337 return', 'oifname "lo" return', 'ip daddr 127.0.0.0/8 return', 'tcp dport 53 return',
    'tcp dport { 5432 } return', 'ip daddr { 10.0.0.0/8 } return', 'ip6 daddr { fd00::/8 } return',
    'meta l4proto tcp redirect to :15001', 'tcp dport { 15001, 15006, 15090 } return', 'meta l4proto tcp redirect to :15006',
  ]) assert.ok(r.includes(line), `missing: ${line}\n${r}`);
  assert.throws(() => interceptionRules({ outboundPort: 0, inboundPort: 15006 }), /port 0 is not a port number/);
});

test('endpoint files: defaults filled in, each problem named with its place', () => {
  const [e] = parseEndpoints(JSON.stringify([{ ips: ['10.1.0.5'], labels: { app: 'a' } }]), 'eps.json');
  assert.deepEqual({ ns: e.namespace, pod: e.pod, ready: e.ready }, { ns: 'default', pod: '10.1.0.5', ready: true });
  const cases: Array<[string, RegExp]> = [
    ['{', /eps.json: not valid JSON/],
    ['{"x": 1}', /expected a list of endpoints/],
    ['[{"labels": {}}]', /endpoints\[0\]: ips: expected a non-empty list/],
    ['[{"ips": ["1.2.3.4"], "labels": {"a": 1}}]', /endpoints\[0\]: labels: expected a map of strings/],
    ['[{"ips": ["1.2.3.4"], "ready": "yes"}]', /endpoints\[0\]: ready: expected true or false/],
  ];
  for (const [text, re] of cases) assert.throws(() => parseEndpoints(text, 'eps.json'), (err: Error) => err instanceof SidecarConfigError && re.test(err.message));
});

test('the store endpoint source lists, then follows puts and deletes', async () => {
  const store = createMemoryStore();
  const rec = (pod: string, ip: string): EndpointRecord => ({ network: 'n', containerId: pod, ifname: 'eth0', namespace: 'default', pod, node: 'n1', ips: [ip], labels: { app: 'a' }, ready: true });
  await store.put(keys.endpoint('n', 'c1', 'eth0'), JSON.stringify(rec('c1', '10.0.0.1')));
  const src = storeEndpointSource(store);
  let latest: EndpointRecord[] = [];
  await src.start((e) => { latest = e; }, (err) => { throw err; });
  try {
    assert.deepEqual(latest.map((e) => e.pod), ['c1']);
    await store.put(keys.endpoint('n', 'c2', 'eth0'), JSON.stringify(rec('c2', '10.0.0.2')));
    await eventually(() => latest.length === 2, 5000, 'put seen');
    await store.delete(keys.endpoint('n', 'c1', 'eth0'));
    await eventually(() => latest.length === 1 && latest[0].pod === 'c2', 5000, 'delete seen');
  } finally {
    await src.stop();
    await store.close();
  }
});

test('request metrics updated in place expose exactly what prom-client\'s own inc/observe would, across a reset', async () => {
  const m = createMetrics({ workload: 'web', namespace: 'shop' }, { defaultMetrics: false });
  const ref = new Registry();
  const names = ['direction', 'source_workload', 'source_namespace', 'destination_service', 'destination_subset', 'route', 'response_code'];
  const c = new Counter({ name: 'meshwork_requests_total', help: 'HTTP requests handled by the sidecar, by outcome.', labelNames: names, registers: [ref] });
  const h = new Histogram({ name: 'meshwork_request_duration_seconds', help: 'Time from request received to response headers sent.', labelNames: names, registers: [ref], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
  const samples: [string, string, string, number, number][] = [['reviews', 'v1', 'r0', 200, 0.0003], ['reviews', 'v1', 'r0', 200, 0.02], ['reviews', 'v2', 'r0', 503, 42], ['reviews', 'v1', 'r0', 200, 0.001], ['ratings', '', '', 200, 0.5]];
  const play = () => {
    for (const [svc, subset, route, code, s] of samples) {
      m.requestSeries('outbound', svc, subset, route, code).record(s);
      const l = { direction: 'outbound', source_workload: 'web', source_namespace: 'shop', destination_service: svc, destination_subset: subset, route, response_code: String(code) };
      c.inc(l);
      h.observe(l, s);
    }
  };
  const text = async (r: Registry) => (await r.metrics()).split('\n').filter((x) => x.startsWith('meshwork_request')).sort().join('\n');
  play();
  assert.match(await text(m.registry), /meshwork_requests_total\{[^}]*destination_subset="v1"[^}]*response_code="200"\} 3/);
  assert.equal(await text(m.registry), await text(ref));
  // The old entry point counts into the same series.
  m.request({ direction: 'outbound', destination_service: 'ratings', destination_subset: '', route: '', response_code: '200' }, 0.5);
  c.inc({ direction: 'outbound', source_workload: 'web', source_namespace: 'shop', destination_service: 'ratings', destination_subset: '', route: '', response_code: '200' });
  h.observe({ direction: 'outbound', source_workload: 'web', source_namespace: 'shop', destination_service: 'ratings', destination_subset: '', route: '', response_code: '200' }, 0.5);
  assert.equal(await text(m.registry), await text(ref));
  // A reset drops the stored cells: later requests must register their series again, not update dropped ones.
  m.registry.resetMetrics();
  ref.resetMetrics();
  play();
  assert.equal(await text(m.registry), await text(ref));
  assert.match(await text(m.registry), /meshwork_request_duration_seconds_count\{[^}]*destination_subset="v2"[^}]*\} 1/);
});
