/**
 * The internal, validated form of the documents users write. policies/ turns
 * YAML (our own kinds, SMI TrafficSplit, Gateway API HTTPRoute) into these
 * objects once, at the edge; DNS, the sidecar, the agent and the CLI only ever
 * see these. Durations are milliseconds, percentages 0..100.
 * This module has no imports: it is the contract between areas.
 */

export interface ObjectMeta {
  name: string;
  namespace: string; // "default" when omitted
  labels: Record<string, string>;
}

export type Protocol = 'TCP' | 'UDP';
export type AppProtocol = 'http' | 'http2' | 'grpc' | 'tcp';

export interface ServicePort {
  name?: string;
  port: number;
  protocol: Protocol;
  targetPort: number;
  appProtocol?: AppProtocol;
}

export interface ServiceSpec {
  type: 'ClusterIP' | 'ExternalName';
  /** Endpoint labels that select this service's endpoints. */
  selector: Record<string, string>;
  ports: ServicePort[];
  /**
   * "None" for headless; an address when explicit; undefined until allocated.
   * The store holds the allocated address once `policy apply` assigned one.
   */
  clusterIP?: string;
  clusterIPs?: string[];
  externalName?: string;
}

export interface Service {
  kind: 'Service';
  metadata: ObjectMeta;
  spec: ServiceSpec;
}

export type LoadBalancer =
  | { type: 'round-robin' }
  | { type: 'random' }
  | { type: 'least-request'; choiceCount: number } // power of N choices, default 2
  | { type: 'ring-hash'; hashOn: { header: string } | { cookie: string } | { sourceIP: true }; minRingSize: number }
  | { type: 'ewma'; decayMs: number };

export interface Subset {
  name: string;
  labels: Record<string, string>;
  loadBalancer?: LoadBalancer;
}

export interface ConnectionPool {
  maxConnections?: number;
  maxPendingRequests?: number;
  maxRequestsPerConnection?: number;
}

/** Field names and meanings as opossum defines them. */
export interface CircuitBreaker {
  errorThresholdPercentage: number;
  volumeThreshold: number;
  rollingCountTimeoutMs: number;
  resetTimeoutMs: number;
}

export interface OutlierDetection {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionPercent: number;
}

export type RetryOn = 'connect-failure' | 'reset' | '5xx' | 'gateway-error' | 'retriable-4xx' | 'refused-stream';

export interface RetryPolicy {
  attempts: number;
  perTryTimeoutMs?: number;
  retryOn: RetryOn[];
  /** Retries may add at most this share (percent) of the requests in flight. */
  budgetPercent: number;
  /** Retries always allowed per second even under the budget. */
  minRetriesPerSecond: number;
}

export interface FaultInjection {
  delay?: { fixedDelayMs: number; percentage: number };
  abort?: { httpStatus: number; percentage: number };
}

export type StringMatch = { exact: string } | { prefix: string } | { regex: string };

export interface RouteMatch {
  path?: StringMatch;
  method?: string;
  headers?: Array<{ name: string } & StringMatch>;
}

export interface WeightedSubset {
  subset: string; // a Subset name, or "" for all endpoints of the service
  weight: number; // the weights of one route sum to 100
}

export interface Route {
  name: string;
  /** Any one match suffices; an empty list matches every request. */
  matches: RouteMatch[];
  backends: WeightedSubset[];
  mirror?: { subset: string; percentage: number };
  timeoutMs?: number;
  retries?: RetryPolicy;
  fault?: FaultInjection;
}

/** Automated canary analysis (issue 7), declared on a TrafficPolicy. */
export interface CanarySpec {
  subset: string;
  stableSubset: string;
  steps: number[]; // weights of the canary, ascending, last is 100
  intervalMs: number;
  minSuccessRatePercent: number;
  maxP99LatencyMs: number;
  /** Compared with the stable subset over the same interval: how many points the canary's success rate may trail it. */
  maxSuccessRateDropPercent?: number;
  /** Compared with the stable subset: the canary's p99 may be at most this multiple of the stable p99. */
  maxP99LatencyRatio?: number;
  /** Route whose split the controller drives; the first route when omitted. */
  route?: string;
}

export interface TrafficPolicySpec {
  /** "<name>" or "<name>.<namespace>" of the Service this policy governs. */
  service: string;
  subsets: Subset[];
  loadBalancer: LoadBalancer;
  connectionPool?: ConnectionPool;
  circuitBreaker?: CircuitBreaker;
  outlierDetection?: OutlierDetection;
  retries?: RetryPolicy;
  timeoutMs?: number;
  fault?: FaultInjection;
  /** Ordered: the first route whose match holds wins. */
  routes: Route[];
  canary?: CanarySpec;
}

export interface TrafficPolicy {
  kind: 'TrafficPolicy';
  metadata: ObjectMeta;
  spec: TrafficPolicySpec;
}

export type PolicyDocument = Service | TrafficPolicy;

/** Where a document came from, for error messages and `policy get`. */
export interface SourceRef {
  file: string;
  line: number;
  column: number;
}
