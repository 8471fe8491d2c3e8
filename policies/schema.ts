/**
 * The schema of meshwork's own document kinds (apiVersion meshwork.dev/v1):
 * Service and TrafficPolicy. Each schema validates the YAML form and
 * transforms it into the model (policies/model.ts): durations to ms, defaults
 * filled in. Cross-field rules that need the whole document (weights, subset
 * references, duplicates) live in semantic.ts. Field names follow Kubernetes
 * Service, Istio DestinationRule/VirtualService and the Gateway API.
 */
import { z } from 'zod';
import type * as M from './model';
import {
  count, dnsLabel, duration, headerName, hostname, ipOrNone, labels, metadata, method, obj, percentage, port, prune, regex,
} from './fields';

export const API_VERSION = 'meshwork.dev/v1';

type Issues = { issues: z.core.$ZodRawIssue[]; value: unknown };
function fail(ctx: Issues, path: PropertyKey[], message: string): void {
  ctx.issues.push({ code: 'custom', message, path, input: ctx.value });
}

/** Exactly one of `fields` must be present. */
function exactlyOne(ctx: Issues & { value: Record<string, unknown> }, fields: string[], what: string): void {
  const given = fields.filter((f) => ctx.value[f] !== undefined);
  if (given.length === 0) fail(ctx, [], `${what}: set one of ${fields.map((f) => `\`${f}\``).join(', ')}`);
  if (given.length > 1) fail(ctx, [given[1]], `${what}: set only one of ${given.map((f) => `\`${f}\``).join(', ')}`);
}

// ---- Service -------------------------------------------------------------

export const servicePort = obj({
  name: dnsLabel.optional(),
  port,
  protocol: z.enum(['TCP', 'UDP']).optional(),
  targetPort: port.optional(),
  appProtocol: z.enum(['http', 'http2', 'grpc', 'tcp']).optional(),
}).transform((p): M.ServicePort => prune({
  name: p.name, port: p.port, protocol: p.protocol ?? 'TCP', targetPort: p.targetPort ?? p.port, appProtocol: p.appProtocol,
}));

export const serviceSpec = obj({
  type: z.enum(['ClusterIP', 'ExternalName']).optional(),
  selector: labels.optional(),
  ports: z.array(servicePort).optional(),
  clusterIP: ipOrNone.optional(),
  clusterIPs: z.array(ipOrNone).min(1).optional(),
  externalName: hostname.optional(),
}).transform((s): M.ServiceSpec => prune({
  type: s.type ?? 'ClusterIP', selector: s.selector ?? {}, ports: s.ports ?? [],
  clusterIP: s.clusterIP, clusterIPs: s.clusterIPs, externalName: s.externalName,
}));

export const serviceDocument = obj({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Service'),
  metadata,
  spec: serviceSpec,
}).transform((d): M.Service => ({ kind: 'Service', metadata: d.metadata, spec: d.spec }))
  .meta({ title: 'Service', description: 'A service: the endpoints a label selector picks, its ports and its cluster IP' });

// ---- TrafficPolicy ---------------------------------------------------------

const consistentHash = obj({
  httpHeaderName: headerName.optional(),
  httpCookie: obj({ name: z.string().min(1) }).optional(),
  useSourceIp: z.literal(true, { error: 'useSourceIp can only be true; set another key to hash on instead' }).optional(),
  minimumRingSize: count(1).optional(),
}).check((ctx) => exactlyOne(ctx, ['httpHeaderName', 'httpCookie', 'useSourceIp'], 'consistentHash'));

export const loadBalancer = obj({
  simple: z.enum(['ROUND_ROBIN', 'RANDOM', 'LEAST_REQUEST', 'EWMA']).optional(),
  choiceCount: count(2).optional(),
  decay: duration.optional(),
  consistentHash: consistentHash.optional(),
}).check((ctx) => {
  exactlyOne(ctx, ['simple', 'consistentHash'], 'loadBalancer');
  if (ctx.value.choiceCount !== undefined && ctx.value.simple !== 'LEAST_REQUEST') fail(ctx, ['choiceCount'], 'choiceCount applies only to simple: LEAST_REQUEST');
  if (ctx.value.decay !== undefined && ctx.value.simple !== 'EWMA') fail(ctx, ['decay'], 'decay applies only to simple: EWMA');
}).transform((lb): M.LoadBalancer => {
  const h = lb.consistentHash;
  if (h) {
    const hashOn = h.httpHeaderName !== undefined ? { header: h.httpHeaderName } : h.httpCookie ? { cookie: h.httpCookie.name } : { sourceIP: true as const };
    return { type: 'ring-hash', hashOn, minRingSize: h.minimumRingSize ?? 1024 };
  }
  switch (lb.simple) {
    case 'RANDOM': return { type: 'random' };
    case 'LEAST_REQUEST': return { type: 'least-request', choiceCount: lb.choiceCount ?? 2 };
    case 'EWMA': return { type: 'ewma', decayMs: lb.decay ?? 10_000 };
    default: return { type: 'round-robin' };
  }
});

export const subset = obj({
  name: dnsLabel,
  labels: labels.refine((l) => Object.keys(l).length > 0, { error: 'a subset needs at least one label' }),
  loadBalancer: loadBalancer.optional(),
}).transform((s): M.Subset => prune({ name: s.name, labels: s.labels, loadBalancer: s.loadBalancer }));

export const connectionPool = obj({
  maxConnections: count(1).optional(),
  maxPendingRequests: count(1).optional(),
  maxRequestsPerConnection: count(1).optional(),
}).transform((c): M.ConnectionPool => prune({ ...c }));

/** Names and defaults as opossum defines them. */
export const circuitBreaker = obj({
  errorThresholdPercentage: percentage.optional(),
  volumeThreshold: count(0).optional(),
  rollingCountTimeout: duration.optional(),
  resetTimeout: duration.optional(),
}).transform((c): M.CircuitBreaker => ({
  errorThresholdPercentage: c.errorThresholdPercentage ?? 50,
  volumeThreshold: c.volumeThreshold ?? 0,
  rollingCountTimeoutMs: c.rollingCountTimeout ?? 10_000,
  resetTimeoutMs: c.resetTimeout ?? 30_000,
}));

export const outlierDetection = obj({
  consecutive5xxErrors: count(1).optional(),
  consecutiveGatewayErrors: count(1).optional(),
  interval: duration.optional(),
  baseEjectionTime: duration.optional(),
  maxEjectionPercent: percentage.optional(),
}).check((ctx) => {
  if (ctx.value.consecutive5xxErrors === undefined && ctx.value.consecutiveGatewayErrors === undefined) {
    fail(ctx, [], 'outlierDetection: set `consecutive5xxErrors` or `consecutiveGatewayErrors` (or both)');
  }
}).transform((o): M.OutlierDetection => prune({
  consecutive5xxErrors: o.consecutive5xxErrors,
  consecutiveGatewayErrors: o.consecutiveGatewayErrors,
  intervalMs: o.interval ?? 10_000,
  baseEjectionTimeMs: o.baseEjectionTime ?? 30_000,
  maxEjectionPercent: o.maxEjectionPercent ?? 10,
}));

export const RETRY_ON = ['connect-failure', 'reset', '5xx', 'gateway-error', 'retriable-4xx', 'refused-stream'] as const;
export const DEFAULT_RETRY_ON: M.RetryOn[] = ['connect-failure', 'refused-stream', 'gateway-error'];

export const retries = obj({
  attempts: count(0).max(100, { error: 'must be at most 100' }),
  perTryTimeout: duration.optional(),
  retryOn: z.array(z.enum(RETRY_ON)).min(1, { error: 'list at least one condition, or omit retryOn' }).optional(),
  budget: obj({ percent: percentage.optional(), minRetriesPerSecond: count(0).optional() }).optional(),
}).check((ctx) => {
  const on = ctx.value.retryOn ?? [];
  on.forEach((c, i) => { if (on.indexOf(c) !== i) fail(ctx, ['retryOn', i], `duplicate retry condition \`${c}\``); });
}).transform((r): M.RetryPolicy => prune({
  attempts: r.attempts,
  perTryTimeoutMs: r.perTryTimeout,
  retryOn: r.retryOn ?? [...DEFAULT_RETRY_ON],
  budgetPercent: r.budget?.percent ?? 20,
  minRetriesPerSecond: r.budget?.minRetriesPerSecond ?? 10,
}));

export const fault = obj({
  delay: obj({ fixedDelay: duration, percentage }).optional(),
  abort: obj({ httpStatus: count(200).max(599, { error: 'must be an HTTP status from 200 to 599' }), percentage }).optional(),
}).check((ctx) => {
  if (!ctx.value.delay && !ctx.value.abort) fail(ctx, [], 'fault: set `delay`, `abort` or both');
}).transform((f): M.FaultInjection => prune({
  delay: f.delay && { fixedDelayMs: f.delay.fixedDelay, percentage: f.delay.percentage },
  abort: f.abort && { httpStatus: f.abort.httpStatus, percentage: f.abort.percentage },
}));

const MATCH_KINDS = ['exact', 'prefix', 'regex'];
function toStringMatch(m: { exact?: string; prefix?: string; regex?: string }): M.StringMatch {
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  return { regex: m.regex as string };
}

export const stringMatch = obj({ exact: z.string().optional(), prefix: z.string().optional(), regex: regex.optional() })
  .check((ctx) => exactlyOne(ctx, MATCH_KINDS, 'match'))
  .transform(toStringMatch);

export const headerMatch = obj({ name: headerName, exact: z.string().optional(), prefix: z.string().optional(), regex: regex.optional() })
  .check((ctx) => exactlyOne(ctx, MATCH_KINDS, 'header match'))
  .transform((h): { name: string } & M.StringMatch => ({ name: h.name, ...toStringMatch(h) }));

export const routeMatch = obj({
  path: stringMatch.optional(),
  method: method.optional(),
  headers: z.array(headerMatch).min(1).optional(),
}).transform((m): M.RouteMatch => prune({ path: m.path, method: m.method, headers: m.headers }));

const weight = count(0).max(100, { error: 'must be between 0 and 100' });

export const backend = obj({ subset: dnsLabel.optional(), weight: weight.optional() });

export const route = obj({
  name: dnsLabel,
  matches: z.array(routeMatch).optional(),
  backends: z.array(backend).min(1, { error: 'a route needs at least one backend' }),
  mirror: obj({ subset: dnsLabel.optional(), percentage: percentage.optional() }).optional(),
  timeout: duration.optional(),
  retries: retries.optional(),
  fault: fault.optional(),
}).check((ctx) => {
  // A lone backend takes all traffic; with several, each weight is explicit.
  if (ctx.value.backends.length > 1) {
    ctx.value.backends.forEach((b, i) => {
      if (b.weight === undefined) fail(ctx, ['backends', i], 'missing `weight`: each backend of a route with several backends needs a weight (the weights sum to 100)');
    });
  }
}).transform((r): M.Route => prune({
  name: r.name,
  matches: r.matches ?? [],
  backends: r.backends.map((b) => ({ subset: b.subset ?? '', weight: b.weight ?? 100 })),
  mirror: r.mirror && { subset: r.mirror.subset ?? '', percentage: r.mirror.percentage ?? 100 },
  timeoutMs: r.timeout,
  retries: r.retries,
  fault: r.fault,
}));

export const canary = obj({
  subset: dnsLabel,
  stableSubset: dnsLabel,
  steps: z.array(weight).min(1, { error: 'list at least one step (the last is 100)' }),
  interval: duration.optional(),
  minSuccessRate: percentage.optional(),
  maxP99Latency: duration.optional(),
  maxSuccessRateDrop: percentage.optional(),
  maxP99LatencyRatio: z.number({ error: 'expected a number above 1 (e.g. 1.5: p99 at most 1.5 times the stable p99)' })
    .min(1, { error: 'must be at least 1 (a canary is never required to beat the stable subset)' }).optional(),
  route: dnsLabel.optional(),
}).transform((c): M.CanarySpec => prune({
  subset: c.subset,
  stableSubset: c.stableSubset,
  steps: c.steps,
  intervalMs: c.interval ?? 60_000,
  minSuccessRatePercent: c.minSuccessRate ?? 99,
  maxP99LatencyMs: c.maxP99Latency ?? 500,
  maxSuccessRateDropPercent: c.maxSuccessRateDrop,
  maxP99LatencyRatio: c.maxP99LatencyRatio,
  route: c.route,
}));

export const serviceRef = z.string({ error: 'expected the name of a service ("name" or "name.namespace")' })
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, { error: (iss) => `"${String(iss.input)}" is not a service name ("name" or "name.namespace")` });

export const trafficPolicySpec = obj({
  service: serviceRef,
  subsets: z.array(subset).optional(),
  loadBalancer: loadBalancer.optional(),
  connectionPool: connectionPool.optional(),
  circuitBreaker: circuitBreaker.optional(),
  outlierDetection: outlierDetection.optional(),
  retries: retries.optional(),
  timeout: duration.optional(),
  fault: fault.optional(),
  routes: z.array(route).optional(),
  canary: canary.optional(),
}).transform((s): M.TrafficPolicySpec => prune({
  service: s.service,
  subsets: s.subsets ?? [],
  loadBalancer: s.loadBalancer ?? { type: 'round-robin' },
  connectionPool: s.connectionPool,
  circuitBreaker: s.circuitBreaker,
  outlierDetection: s.outlierDetection,
  retries: s.retries,
  timeoutMs: s.timeout,
  fault: s.fault,
  routes: s.routes ?? [],
  canary: s.canary,
}));

export const trafficPolicyDocument = obj({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('TrafficPolicy'),
  metadata,
  spec: trafficPolicySpec,
}).transform((d): M.TrafficPolicy => ({ kind: 'TrafficPolicy', metadata: d.metadata, spec: d.spec }))
  .meta({ title: 'TrafficPolicy', description: 'How traffic to one service behaves: subsets, load balancing, resilience and routes' });
