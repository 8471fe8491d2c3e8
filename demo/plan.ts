/**
 * The demo's cluster as data, pure: hosts, pods, their namespaces and roles,
 * and the Service/TrafficPolicy documents. Everything else (demo/cluster.ts)
 * just makes this plan real, so names and shapes are checked without root.
 */
export const APP_PORT = 9080;
export const ADMIN_PORT = 15090;
export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;
export const CLUSTER_CIDR = '10.244.0.0/16';
export const UNDERLAY_PREFIX = '10.250.0';

export interface HostPlan {
  index: number;
  /** Node name in the store and namespace name. */
  name: string;
  netns: string;
  underlayIp: string;
  /** Name of its veth end in the underlay namespace. */
  underlayPort: string;
}

export type Role = 'backend' | 'frontend' | 'loadgen';

export interface PodPlan {
  /** Pod name (the EndpointRecord's pod, the sidecar's /endpoints pod). */
  name: string;
  app: string;
  version: string;
  role: Role;
  netns: string;
  host: HostPlan;
  containerId: string;
  /** For the frontend: URLs of its upstreams; for the loadgen: its target. */
  calls: string[];
}

export interface Plan {
  id: string;
  /**
   * Kubernetes-style namespace of the app and overlay network name: "default"
   * and "overlay" in the run's own store; the run id in a shared store (etcd),
   * so runs never see, or delete, each other's (or a user's) documents.
   */
  namespace: string;
  network: string;
  underlayNetns: string;
  underlayBridge: string;
  hosts: HostPlan[];
  pods: PodPlan[];
}

interface PodTemplate { name: string; app: string; version: string; role: Role; calls: string[]; short: string }

const svc = (name: string) => `http://${name}:${APP_PORT}/`;

/** The bookstore: a frontend calling reviews (two v1 pods, one v2) and ratings; a load generator calling the frontend. */
const PODS: PodTemplate[] = [
  { name: 'frontend', app: 'frontend', version: 'v1', role: 'frontend', calls: [svc('reviews'), svc('ratings')], short: 'fe' },
  { name: 'reviews-v1-a', app: 'reviews', version: 'v1', role: 'backend', calls: [], short: 'rv1a' },
  { name: 'reviews-v1-b', app: 'reviews', version: 'v1', role: 'backend', calls: [], short: 'rv1b' },
  { name: 'reviews-v2', app: 'reviews', version: 'v2', role: 'backend', calls: [], short: 'rv2' },
  { name: 'ratings', app: 'ratings', version: 'v1', role: 'backend', calls: [], short: 'rt' },
  { name: 'loadgen', app: 'loadgen', version: 'v1', role: 'loadgen', calls: [svc('frontend')], short: 'lg' },
];

export function makePlan(id: string, hostCount: number, sharedStore = false): Plan {
  if (!Number.isInteger(hostCount) || hostCount < 1 || hostCount > 20) {
    throw new RangeError(`--hosts: expected a whole number from 1 to 20, got ${hostCount}`);
  }
  const hosts: HostPlan[] = [];
  for (let i = 1; i <= hostCount; i++) {
    hosts.push({ index: i, name: `${id}-h${i}`, netns: `${id}-h${i}`, underlayIp: `${UNDERLAY_PREFIX}.${i + 1}`, underlayPort: `h${i}` });
  }
  // Spread pods over hosts so every call in the story crosses the overlay when it can.
  const pods = PODS.map((t, i): PodPlan => ({
    name: t.name, app: t.app, version: t.version, role: t.role, calls: t.calls,
    netns: `${id}-${t.short}`,
    host: hosts[i % hosts.length],
    containerId: `${id}-${t.name}`,
  }));
  return {
    id, namespace: sharedStore ? id : 'default', network: sharedStore ? id : 'overlay',
    underlayNetns: `${id}-u`, underlayBridge: 'br0', hosts, pods,
  };
}

export function allNamespaces(p: Plan): string[] {
  return [p.underlayNetns, ...p.hosts.map((h) => h.netns), ...p.pods.map((x) => x.netns)];
}

export interface StoryTiming {
  /** Seconds between canary analyses. */
  stepSeconds: number;
}

/** Services and the reviews/ratings policies, as `meshwork policy apply` reads them. */
export function policyYaml(t: StoryTiming, namespace = 'default'): string {
  const service = (name: string) => `apiVersion: meshwork.dev/v1
kind: Service
metadata:
  name: ${name}
  namespace: ${namespace}
  labels: { app: ${name} }
spec:
  selector: { app: ${name} }
  ports:
    - name: http
      port: ${APP_PORT}
      targetPort: ${APP_PORT}
      appProtocol: http
`;
  const resilience = `  circuitBreaker:
    errorThresholdPercentage: 80
    volumeThreshold: 4
    rollingCountTimeout: 10s
    resetTimeout: 10s
  outlierDetection:
    consecutiveGatewayErrors: 5
    interval: 5s
    baseEjectionTime: 10s
    maxEjectionPercent: 50
  retries:
    attempts: 2
    perTryTimeout: 500ms
    retryOn: [connect-failure, reset, gateway-error]
  timeout: 2s
`;
  return [
    service('frontend'),
    service('reviews'),
    service('ratings'),
    `apiVersion: meshwork.dev/v1
kind: TrafficPolicy
metadata:
  name: reviews
  namespace: ${namespace}
spec:
  service: reviews
  subsets:
    - name: v1
      labels: { version: v1 }
    - name: v2
      labels: { version: v2 }
${resilience}  routes:
    - name: default
      backends:
        - subset: v1
          weight: 90
        - subset: v2
          weight: 10
  canary:
    subset: v2
    stableSubset: v1
    route: default
    steps: [10, 25, 50, 75, 100]
    interval: ${t.stepSeconds}s
    minSuccessRate: 95
    maxP99Latency: 1s
`,
    `apiVersion: meshwork.dev/v1
kind: TrafficPolicy
metadata:
  name: ratings
  namespace: ${namespace}
spec:
  service: ratings
${resilience}`,
  ].join('---\n');
}
