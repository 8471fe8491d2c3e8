/**
 * Turns one snapshot of cluster state (Services, TrafficPolicies, endpoint
 * records) into the immutable routing table the request path reads: an
 * `Upstream` per service port, its subsets with their balancers, its compiled
 * routes. A new table is built whole and swapped in one assignment; requests
 * already running keep the table they started with.
 */
import type { EndpointRecord } from '../store/records';
import type { LoadBalancer, Route, Service, ServicePort, TrafficPolicy, TrafficPolicySpec } from '../policies/model';
import { createBalancer, type Balancer, type Random } from './balancers';
import { EndpointRegistry, type Endpoint } from './endpoint';

export interface Snapshot {
  services: Service[];
  policies: TrafficPolicy[];
  endpoints: EndpointRecord[];
}

export interface SubsetRuntime {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  readonly balancer: Balancer;
  /** The balancer's spec (ring hash needs to know what to hash). */
  readonly lb: LoadBalancer;
}

export interface CompiledMatch {
  path?: (p: string) => boolean;
  method?: string;
  headers: Array<{ name: string; test: (v: string | undefined) => boolean }>;
}

export interface CompiledRoute {
  readonly spec: Route;
  readonly name: string;
  readonly matches: CompiledMatch[];
  readonly backends: Array<{ subset: SubsetRuntime; weight: number }>;
  readonly mirror?: { subset: SubsetRuntime; percentage: number };
}

/** Long-lived per service port: limits and budgets survive policy swaps. */
export class ServiceState {
  active = 0;
  readonly waiting: Array<() => void> = [];
  inflight = 0;
  retriesInflight = 0;
  retryWindowStart = 0;
  retriesInWindow = 0;
}

export interface Upstream {
  /** "<name>.<namespace>": the destination_service label. */
  readonly name: string;
  readonly port: ServicePort;
  readonly policy: TrafficPolicySpec;
  readonly routes: CompiledRoute[];
  readonly all: SubsetRuntime;
  readonly subsets: ReadonlyMap<string, SubsetRuntime>;
  readonly endpoints: readonly Endpoint[];
  readonly state: ServiceState;
  /** Non-HTTP traffic: pass through per connection without sniffing. */
  readonly tcpOnly: boolean;
}

export interface RoutingTable {
  /** "<clusterIP>:<port>" -> upstream. */
  byAddress: Map<string, Upstream>;
  /** "<host name>:<port>" for each name form a client may use. */
  byHost: Map<string, Upstream>;
  upstreams: Upstream[];
  snapshot: Snapshot;
}

export function defaultPolicy(service: string): TrafficPolicySpec {
  return { service, subsets: [], loadBalancer: { type: 'round-robin' }, routes: [] };
}

const DEFAULT_ROUTE: Route = { name: 'default', matches: [], backends: [{ subset: '', weight: 100 }] };

export interface CompileDeps {
  registry: EndpointRegistry;
  states: Map<string, ServiceState>;
  random: Random;
  /** The sidecar's own namespace: short names resolve within it. */
  namespace: string;
  clusterDomain: string;
}

export function compile(snap: Snapshot, deps: CompileDeps): RoutingTable {
  const table: RoutingTable = { byAddress: new Map(), byHost: new Map(), upstreams: [], snapshot: snap };
  const live = new Set<string>();
  const policyFor = new Map<string, TrafficPolicy>();
  for (const p of snap.policies) {
    const [name, ns] = p.spec.service.includes('.') ? p.spec.service.split('.', 2) : [p.spec.service, p.metadata.namespace];
    policyFor.set(`${name}.${ns}`, p);
  }
  for (const svc of snap.services) {
    if (svc.spec.type !== 'ClusterIP') continue;
    const fq = `${svc.metadata.name}.${svc.metadata.namespace}`;
    const spec = policyFor.get(fq)?.spec ?? defaultPolicy(fq);
    const records = snap.endpoints.filter((r) => r.ready && r.namespace === svc.metadata.namespace && selects(svc.spec.selector, r.labels));
    for (const port of svc.spec.ports) {
      if (port.protocol !== 'TCP') continue;
      const eps: Endpoint[] = [];
      for (const r of records) {
        const ip = r.ips.find((a) => !a.includes(':')) ?? r.ips[0];
        if (!ip) continue;
        const ep = deps.registry.get(ip, port.targetPort, r.labels, `${r.namespace}/${r.pod}`);
        live.add(ep.key);
        eps.push(ep);
      }
      const stateKey = `${fq}:${port.port}`;
      let state = deps.states.get(stateKey);
      if (!state) { state = new ServiceState(); deps.states.set(stateKey, state); }
      const up = buildUpstream(fq, port, spec, eps, state, deps.random);
      table.upstreams.push(up);
      const ips = [svc.spec.clusterIP, ...(svc.spec.clusterIPs ?? [])].filter((a): a is string => !!a && a !== 'None');
      for (const ip of ips) table.byAddress.set(`${ip}:${port.port}`, up);
      for (const host of hostNames(svc.metadata.name, svc.metadata.namespace, deps)) table.byHost.set(`${host}:${port.port}`, up);
    }
  }
  deps.registry.retain(live);
  return table;
}

export function buildUpstream(name: string, port: ServicePort, spec: TrafficPolicySpec, eps: Endpoint[], state: ServiceState, random: Random): Upstream {
  const subsetOf = (lb: LoadBalancer | undefined, sname: string, members: Endpoint[]): SubsetRuntime =>
    ({ name: sname, endpoints: members, lb: lb ?? spec.loadBalancer, balancer: createBalancer(lb ?? spec.loadBalancer, members, random) });
  const all = subsetOf(undefined, '', eps);
  const subsets = new Map<string, SubsetRuntime>([['', all]]);
  for (const s of spec.subsets) subsets.set(s.name, subsetOf(s.loadBalancer, s.name, eps.filter((e) => selects(s.labels, e.labels))));
  const routeSpecs = spec.routes.length > 0 ? spec.routes : [DEFAULT_ROUTE];
  const routes = routeSpecs.map((r): CompiledRoute => ({
    spec: r,
    name: r.name,
    matches: r.matches.map(compileMatch),
    backends: r.backends.map((b) => ({ subset: subsets.get(b.subset) ?? subsetOf(undefined, b.subset, []), weight: b.weight })),
    mirror: r.mirror ? { subset: subsets.get(r.mirror.subset) ?? subsetOf(undefined, r.mirror.subset, []), percentage: r.mirror.percentage } : undefined,
  }));
  const tcpOnly = port.appProtocol === 'tcp';
  return { name, port, policy: spec, routes, all, subsets, endpoints: eps, state, tcpOnly };
}

function hostNames(name: string, ns: string, deps: CompileDeps): string[] {
  const names = [`${name}.${ns}`, `${name}.${ns}.svc`, `${name}.${ns}.svc.${deps.clusterDomain}`];
  if (ns === deps.namespace) names.push(name);
  return names;
}

export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

function compileString(m: { exact: string } | { prefix: string } | { regex: string }): (v: string | undefined) => boolean {
  if ('exact' in m) return (v) => v === m.exact;
  if ('prefix' in m) return (v) => v !== undefined && v.startsWith(m.prefix);
  const re = new RegExp(`^(?:${m.regex})$`);
  return (v) => v !== undefined && re.test(v);
}

function compileMatch(m: Route['matches'][number]): CompiledMatch {
  return {
    path: m.path ? compileString(m.path) : undefined,
    method: m.method?.toUpperCase(),
    headers: (m.headers ?? []).map((h) => ({ name: h.name.toLowerCase(), test: compileString(h) })),
  };
}
