/**
 * The model back to the YAML form users write: what `policy get` prints and
 * `policy apply --dry-run` diffs. It is the inverse of schema.ts, field for
 * field (every default is written out), so `get` output applies unchanged.
 */
import * as YAML from 'yaml';
import { formatDuration as d } from './duration';
import { prune } from './fields';
import type * as M from './model';
import { API_VERSION } from './schema';

type Obj = Record<string, unknown>;

function loadBalancer(lb: M.LoadBalancer): Obj {
  switch (lb.type) {
    case 'round-robin': return { simple: 'ROUND_ROBIN' };
    case 'random': return { simple: 'RANDOM' };
    case 'least-request': return { simple: 'LEAST_REQUEST', choiceCount: lb.choiceCount };
    case 'ewma': return { simple: 'EWMA', decay: d(lb.decayMs) };
    case 'ring-hash': {
      const h = lb.hashOn;
      const on = 'header' in h ? { httpHeaderName: h.header } : 'cookie' in h ? { httpCookie: { name: h.cookie } } : { useSourceIp: true };
      return { consistentHash: { ...on, minimumRingSize: lb.minRingSize } };
    }
  }
}

function retries(r: M.RetryPolicy): Obj {
  return prune({
    attempts: r.attempts,
    perTryTimeout: r.perTryTimeoutMs === undefined ? undefined : d(r.perTryTimeoutMs),
    retryOn: [...r.retryOn],
    budget: { percent: r.budgetPercent, minRetriesPerSecond: r.minRetriesPerSecond },
  });
}

function fault(f: M.FaultInjection): Obj {
  return prune({
    delay: f.delay && { fixedDelay: d(f.delay.fixedDelayMs), percentage: f.delay.percentage },
    abort: f.abort && { httpStatus: f.abort.httpStatus, percentage: f.abort.percentage },
  });
}

function route(r: M.Route): Obj {
  return prune({
    name: r.name,
    matches: r.matches.length ? r.matches.map((m) => prune({ path: m.path && { ...m.path }, method: m.method, headers: m.headers?.map((h) => ({ ...h })) })) : undefined,
    backends: r.backends.map((b) => prune({ subset: b.subset || undefined, weight: b.weight })),
    mirror: r.mirror && prune({ subset: r.mirror.subset || undefined, percentage: r.mirror.percentage }),
    timeout: r.timeoutMs === undefined ? undefined : d(r.timeoutMs),
    retries: r.retries && retries(r.retries),
    fault: r.fault && fault(r.fault),
  });
}

function trafficPolicySpec(s: M.TrafficPolicySpec): Obj {
  const c = s.canary;
  return prune({
    service: s.service,
    subsets: s.subsets.length ? s.subsets.map((x) => prune({ name: x.name, labels: { ...x.labels }, loadBalancer: x.loadBalancer && loadBalancer(x.loadBalancer) })) : undefined,
    loadBalancer: loadBalancer(s.loadBalancer),
    connectionPool: s.connectionPool && { ...s.connectionPool },
    circuitBreaker: s.circuitBreaker && {
      errorThresholdPercentage: s.circuitBreaker.errorThresholdPercentage,
      volumeThreshold: s.circuitBreaker.volumeThreshold,
      rollingCountTimeout: d(s.circuitBreaker.rollingCountTimeoutMs),
      resetTimeout: d(s.circuitBreaker.resetTimeoutMs),
    },
    outlierDetection: s.outlierDetection && prune({
      consecutive5xxErrors: s.outlierDetection.consecutive5xxErrors,
      consecutiveGatewayErrors: s.outlierDetection.consecutiveGatewayErrors,
      interval: d(s.outlierDetection.intervalMs),
      baseEjectionTime: d(s.outlierDetection.baseEjectionTimeMs),
      maxEjectionPercent: s.outlierDetection.maxEjectionPercent,
    }),
    retries: s.retries && retries(s.retries),
    timeout: s.timeoutMs === undefined ? undefined : d(s.timeoutMs),
    fault: s.fault && fault(s.fault),
    routes: s.routes.length ? s.routes.map(route) : undefined,
    canary: c && prune({
      subset: c.subset, stableSubset: c.stableSubset, route: c.route, steps: [...c.steps],
      interval: d(c.intervalMs), minSuccessRate: c.minSuccessRatePercent, maxP99Latency: d(c.maxP99LatencyMs),
      maxSuccessRateDrop: c.maxSuccessRateDropPercent, maxP99LatencyRatio: c.maxP99LatencyRatio,
    }),
  });
}

function serviceSpec(s: M.ServiceSpec): Obj {
  return prune({
    type: s.type,
    selector: Object.keys(s.selector).length ? { ...s.selector } : undefined,
    ports: s.ports.length ? s.ports.map((p) => prune({ ...p })) : undefined,
    clusterIP: s.clusterIP,
    clusterIPs: s.clusterIPs && [...s.clusterIPs],
    externalName: s.externalName,
  });
}

/** A document as the YAML object a user would write. */
export function toManifest(doc: M.PolicyDocument): Obj {
  const m = doc.metadata;
  return {
    apiVersion: API_VERSION,
    kind: doc.kind,
    metadata: prune({ name: m.name, namespace: m.namespace, labels: Object.keys(m.labels).length ? { ...m.labels } : undefined }),
    spec: doc.kind === 'Service' ? serviceSpec(doc.spec) : trafficPolicySpec(doc.spec),
  };
}

/** Documents as one YAML stream, `---` between them. */
export function toYaml(docs: M.PolicyDocument[]): string {
  return docs.map((doc) => YAML.stringify(toManifest(doc), { lineWidth: 0 })).join('---\n');
}
