import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph, dnsView, emptySnapshot, serviceEndpoints, type StoreSnapshot } from '../../agent/dashboard-model';
import type { Scrape } from '../../canary/source';
import type { TrafficPolicy } from '../../policies/model';
import { Ring } from '../../agent/dashboard';

type Row = [direction: string, src: string, dst: string, subset: string, code: string, count: number];
const req = ([direction, src, dst, subset, code, count]: Row) => ({
  name: 'meshwork_requests_total',
  labels: { direction, source_workload: src, source_namespace: 'default', destination_service: dst, destination_subset: subset, route: 'default', response_code: code },
  value: count,
});
const scrape = (at: number, targets: Record<string, Row[]>): Scrape => ({ at, targets: Object.entries(targets).map(([target, rows]) => ({ target, samples: rows.map(req) })) });

const snap = (): StoreSnapshot => {
  const s = emptySnapshot();
  const tp: TrafficPolicy = {
    kind: 'TrafficPolicy', metadata: { name: 'reviews', namespace: 'default', labels: {} },
    spec: {
      service: 'reviews', loadBalancer: { type: 'round-robin' }, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }],
      routes: [{ name: 'default', matches: [], backends: [{ subset: 'v1', weight: 80 }, { subset: 'v2', weight: 20 }] }],
      canary: { subset: 'v2', stableSubset: 'v1', steps: [20, 100], intervalMs: 1000, minSuccessRatePercent: 99, maxP99LatencyMs: 100 },
    },
  };
  s.policies.push(tp);
  s.services.push({ kind: 'Service', metadata: { name: 'reviews', namespace: 'default', labels: {} }, spec: { type: 'ClusterIP', selector: { app: 'reviews' }, ports: [] } });
  s.endpoints.push({ network: 'n', containerId: 'c1', ifname: 'eth0', namespace: 'default', pod: 'r2', node: 'h', ips: ['10.0.0.9'], labels: { app: 'reviews', version: 'v2' }, ready: true });
  return s;
};

test('buildGraph: caller-side counts win, callee-side fills in, rates per second, split and canary on the edge', () => {
  const prev = scrape(0, {
    fe: [['outbound', 'frontend', 'reviews.default', 'v1', '200', 0], ['outbound', 'frontend', 'reviews.default', 'v2', '200', 0], ['outbound', 'frontend', 'reviews.default', 'v2', '503', 0]],
    rv: [['inbound', 'frontend', 'reviews.default', 'v1', '200', 0], ['inbound', 'web', 'reviews.default', '', '200', 0]],
  });
  const cur = scrape(2000, {
    fe: [['outbound', 'frontend', 'reviews.default', 'v1', '200', 160], ['outbound', 'frontend', 'reviews.default', 'v2', '200', 38], ['outbound', 'frontend', 'reviews.default', 'v2', '503', 2]],
    rv: [['inbound', 'frontend', 'reviews.default', 'v1', '200', 999], ['inbound', 'web', 'reviews.default', '', '200', 20]],
  });
  const g = buildGraph(prev, cur, snap());
  const fe = g.edges.find((e) => e.id === 'frontend.default->reviews.default')!;
  assert.equal(fe.rps, 100, 'outbound only: the inbound copy of the same calls is not added');
  assert.equal(fe.errorRps, 1);
  assert.equal(fe.successRate, 99);
  assert.deepEqual(fe.subsets.map((s) => [s.subset, s.rps]), [['v1', 80], ['v2', 20]]);
  assert.deepEqual(fe.split, [{ subset: 'v1', weight: 80 }, { subset: 'v2', weight: 20 }]);
  assert.deepEqual(fe.canary, { subset: 'v2', weight: 20, phase: 'Pending' });
  const web = g.edges.find((e) => e.id === 'web.default->reviews.default')!;
  assert.equal(web.rps, 10, 'a caller without a sidecar is seen from the callee');
  const reviews = g.nodes.find((n) => n.id === 'reviews.default')!;
  assert.equal(reviews.kind, 'service');
  assert.equal(reviews.rps, 110);
  assert.equal(g.nodes.find((n) => n.id === 'frontend.default')!.kind, 'workload');
  assert.equal(g.windowMs, 2000);
});

test('serviceEndpoints: subsets from the policy, worst breaker state across sidecars, ejections counted', () => {
  const cur: Scrape = { at: 0, targets: [
    { target: 'a', samples: [{ name: 'meshwork_circuit_breaker_state', labels: { destination_service: 'reviews.default', endpoint: '10.0.0.9:9080' }, value: 2 }] },
    { target: 'b', samples: [
      { name: 'meshwork_circuit_breaker_state', labels: { destination_service: 'reviews.default', endpoint: '10.0.0.9:9080' }, value: 1 },
      { name: 'meshwork_outlier_ejected', labels: { destination_service: 'reviews.default', endpoint: '10.0.0.9:9080' }, value: 1 },
    ] },
    { target: 'c', samples: [{ name: 'meshwork_circuit_breaker_state', labels: { destination_service: 'reviews.default', endpoint: '10.0.0.9:9080' }, value: 0 }] },
  ] };
  assert.deepEqual(serviceEndpoints(snap(), cur, 'reviews.default'), [{ pod: 'default/r2', node: 'h', ips: ['10.0.0.9'], ready: true, subsets: ['v2'], breaker: 'open', ejectedBy: 1 }]);
});

test('Ring keeps the newest items', () => {
  const r = new Ring<number>(3);
  for (let i = 1; i <= 5; i++) r.push(i);
  assert.deepEqual(r.toArray(), [3, 4, 5]);
});

test('dnsView: query and failure rates per DNS server', () => {
  const q = (rcode: string, value: number) => ({ name: 'meshwork_dns_queries_total', labels: { type: 'A', rcode }, value });
  const prev: Scrape = { at: 0, targets: [{ target: 'dns-a', samples: [q('NOERROR', 10), q('NXDOMAIN', 0), q('SERVFAIL', 0)] }] };
  const cur: Scrape = { at: 1000, targets: [{ target: 'dns-a', samples: [q('NOERROR', 40), q('NXDOMAIN', 5), q('SERVFAIL', 2)] }] };
  assert.deepEqual(dnsView(prev, cur), [{ target: 'dns-a', qps: 37, errorQps: 2 }]);
});

test('readSnapshot skips stored documents that are not whole documents instead of failing', async () => {
  const { createMemoryStore } = await import('../../store/memory');
  const { readSnapshot } = await import('../../agent/dashboard');
  const { keys } = await import('../../store/keys');
  const store = createMemoryStore();
  try {
    await store.put(keys.policy('Service', 'default', 'broken'), JSON.stringify({ kind: 'Service' }));
    await store.put(keys.policy('Service', 'default', 'ok'), JSON.stringify({ kind: 'Service', metadata: { name: 'ok', namespace: 'default', labels: {} }, spec: { type: 'ClusterIP', selector: {}, ports: [] } }));
    await store.put(keys.policy('TrafficPolicy', 'default', 'junk'), 'not json');
    const snap = await readSnapshot(store);
    assert.deepEqual(snap.services.map((s) => s.metadata.name), ['ok']);
    assert.deepEqual(snap.policies, []);
  } finally {
    await store.close();
  }
});
