/**
 * Every field round-trips: YAML -> model -> the YAML `policy get` prints ->
 * model, equal. A coverage check makes sure the cases together use every
 * field of policies/model.ts, so a new model field without YAML fails here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toYaml } from '../../policies/manifest';
import type { PolicyDocument } from '../../policies/model';
import { load, policy, SERVICE, withService } from './util';

const CASES: Array<{ name: string; yaml: string }> = [
  { name: 'service with every field', yaml: `apiVersion: meshwork.dev/v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {app: web, tier: front}
spec:
  type: ClusterIP
  selector: {app: web}
  clusterIP: 10.96.1.2
  clusterIPs: [10.96.1.2, "fd00:10:96::2"]
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080, appProtocol: http}
    - {name: h2, port: 81, targetPort: 8081, appProtocol: http2}
    - {name: grpc, port: 90, appProtocol: grpc}
    - {name: raw, port: 91, appProtocol: tcp}
    - {name: dns, port: 53, protocol: UDP}
` },
  { name: 'headless service', yaml: 'apiVersion: meshwork.dev/v1\nkind: Service\nmetadata: {name: db}\nspec:\n  clusterIP: None\n  selector: {app: db}\n' },
  { name: 'ExternalName service', yaml: 'apiVersion: meshwork.dev/v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  type: ExternalName\n  externalName: api.example.com\n' },
  { name: 'round robin, subsets with their own balancers', yaml: withService(policy(`  loadBalancer: {simple: ROUND_ROBIN}
  subsets:
    - {name: a, labels: {version: a}, loadBalancer: {simple: RANDOM}}
    - {name: b, labels: {version: b}, loadBalancer: {simple: LEAST_REQUEST, choiceCount: 3}}
    - {name: c, labels: {version: c}, loadBalancer: {simple: EWMA, decay: 5s}}
    - {name: d, labels: {version: d}, loadBalancer: {consistentHash: {httpCookie: {name: sid}}}}
    - {name: e, labels: {version: e}, loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 64}}}
`)) },
  { name: 'ring hash on a header', yaml: withService(policy('  loadBalancer: {consistentHash: {httpHeaderName: X-User}}\n')) },
  { name: 'least request default choices, EWMA default decay', yaml: withService(policy(`  loadBalancer: {simple: LEAST_REQUEST}
  subsets: [{name: a, labels: {v: a}, loadBalancer: {simple: EWMA}}]
`)) },
  { name: 'resilience: pool, breaker, outlier, retries, timeout, fault', yaml: withService(policy(`  connectionPool: {maxConnections: 10, maxPendingRequests: 5, maxRequestsPerConnection: 100}
  circuitBreaker: {errorThresholdPercentage: 40, volumeThreshold: 5, rollingCountTimeout: 20s, resetTimeout: 1m}
  outlierDetection: {consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, interval: 5s, baseEjectionTime: 15s, maxEjectionPercent: 30}
  retries: {attempts: 4, perTryTimeout: 250ms, retryOn: [connect-failure, reset, 5xx, gateway-error, retriable-4xx, refused-stream], budget: {percent: 25, minRetriesPerSecond: 3}}
  timeout: 2s
  fault: {delay: {fixedDelay: 100ms, percentage: 1.5}, abort: {httpStatus: 503, percentage: 0.1}}
`)) },
  { name: 'defaults written out', yaml: withService(policy(`  circuitBreaker: {}
  outlierDetection: {consecutive5xxErrors: 1}
  retries: {attempts: 1}
`)) },
  { name: 'routes with every match and per-route settings', yaml: withService(policy(`  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
  routes:
    - name: exact
      matches:
        - path: {exact: /login}
          method: POST
          headers:
            - {name: X-A, exact: "1"}
            - {name: x-b, prefix: pre}
            - {name: x-c, regex: "^[a-z]+$"}
        - path: {prefix: /api/}
        - path: {regex: "^/v[0-9]+/"}
      backends: [{subset: v2}]
      mirror: {subset: v1, percentage: 25}
      timeout: 1500ms
      retries: {attempts: 0}
      fault: {abort: {httpStatus: 500, percentage: 100}}
    - name: split
      backends: [{subset: v1, weight: 70}, {subset: v2, weight: 30}]
      mirror: {}
    - name: all
      backends: [{weight: 100}]
`)) },
  { name: 'canary with and without a route', yaml: withService(policy(`  subsets:
    - {name: stable, labels: {track: stable}}
    - {name: canary, labels: {track: canary}}
  routes:
    - {name: main, backends: [{subset: stable, weight: 100}, {subset: canary, weight: 0}]}
  canary: {subset: canary, stableSubset: stable, route: main, steps: [5, 50, 100], interval: 30s, minSuccessRate: 99.5, maxP99Latency: 250ms, maxSuccessRateDrop: 0.5, maxP99LatencyRatio: 1.5}
`)) },
  { name: 'canary defaults', yaml: withService(policy(`  subsets:
    - {name: stable, labels: {track: stable}}
    - {name: canary, labels: {track: canary}}
  routes: [{name: main, backends: [{subset: stable}]}]
  canary: {subset: canary, stableSubset: stable, steps: [100]}
`)) },
];

/** Every field name of the interfaces in policies/model.ts. */
const MODEL_FIELDS = `kind metadata spec name namespace labels port protocol targetPort appProtocol type selector ports clusterIP clusterIPs
externalName choiceCount hashOn header cookie sourceIP minRingSize decayMs loadBalancer maxConnections maxPendingRequests
maxRequestsPerConnection errorThresholdPercentage volumeThreshold rollingCountTimeoutMs resetTimeoutMs consecutive5xxErrors
consecutiveGatewayErrors intervalMs baseEjectionTimeMs maxEjectionPercent attempts perTryTimeoutMs retryOn budgetPercent
minRetriesPerSecond delay abort fixedDelayMs percentage httpStatus exact prefix regex path method headers subset weight
matches backends mirror timeoutMs retries fault service subsets connectionPool circuitBreaker outlierDetection routes canary
stableSubset steps minSuccessRatePercent maxP99LatencyMs maxSuccessRateDropPercent maxP99LatencyRatio route`.split(/\s+/);

function collectKeys(v: unknown, into: Set<string>): void {
  if (Array.isArray(v)) v.forEach((x) => collectKeys(x, into));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) {
    // Label maps hold user keys, not model fields.
    if (k !== 'labels' && k !== 'selector') collectKeys(x, into);
    into.add(k);
  }
}

for (const c of CASES) {
  test(`round-trip: ${c.name}`, () => {
    const first = load(c.yaml);
    const printed = toYaml(first);
    const second = load(printed);
    assert.deepEqual(second, first);
    assert.equal(toYaml(second), printed, 'printing is stable');
  });
}

test('the round-trip cases cover every field and variant of the model', () => {
  const seen = new Set<string>();
  const docs: PolicyDocument[] = CASES.flatMap((c) => load(c.yaml));
  collectKeys(docs, seen);
  const missing = MODEL_FIELDS.filter((f) => !seen.has(f));
  assert.deepEqual(missing, [], `model fields no case uses: ${missing.join(', ')}`);
  const lbTypes = new Set<string>();
  const protocols = new Set<string>();
  for (const d of docs) {
    if (d.kind === 'Service') { d.spec.ports.forEach((p) => { protocols.add(p.protocol); protocols.add(p.appProtocol ?? ''); }); continue; }
    lbTypes.add(d.spec.loadBalancer.type);
    d.spec.subsets.forEach((s) => s.loadBalancer && lbTypes.add(s.loadBalancer.type));
  }
  assert.deepEqual([...lbTypes].sort(), ['ewma', 'least-request', 'random', 'ring-hash', 'round-robin']);
  for (const p of ['TCP', 'UDP', 'http', 'http2', 'grpc', 'tcp']) assert.ok(protocols.has(p), p);
});

test('defaults are explicit in the model', () => {
  const [, tp] = load(withService(policy('  circuitBreaker: {}\n  outlierDetection: {consecutive5xxErrors: 1}\n  retries: {attempts: 1}\n')));
  assert.equal(tp.kind, 'TrafficPolicy');
  if (tp.kind !== 'TrafficPolicy') return;
  assert.deepEqual(tp.metadata, { name: 'reviews', namespace: 'default', labels: {} });
  assert.deepEqual(tp.spec.loadBalancer, { type: 'round-robin' });
  assert.deepEqual(tp.spec.circuitBreaker, { errorThresholdPercentage: 50, volumeThreshold: 0, rollingCountTimeoutMs: 10_000, resetTimeoutMs: 30_000 });
  assert.deepEqual(tp.spec.outlierDetection, { consecutive5xxErrors: 1, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 });
  assert.deepEqual(tp.spec.retries, { attempts: 1, retryOn: ['connect-failure', 'refused-stream', 'gateway-error'], budgetPercent: 20, minRetriesPerSecond: 10 });
  const [svc] = load(SERVICE);
  assert.deepEqual(svc.spec, { type: 'ClusterIP', selector: { app: 'reviews' }, ports: [{ name: 'http', port: 9080, protocol: 'TCP', targetPort: 9080 }] });
});
