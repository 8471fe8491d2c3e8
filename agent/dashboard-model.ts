/**
 * What the dashboard shows, computed from two scrapes of the sidecars'
 * metrics and a snapshot of the store: the service graph (who calls whom,
 * with rate, success rate and p99 per edge and per subset, and the split each
 * TrafficPolicy asks for), per-service details and the network view. Pure:
 * no I/O, no clock; dashboard.ts feeds it and keeps the history rings.
 */
import type { EndpointRecord, NodeRecord, SubnetLease } from '../store/records';
import type { Service, TrafficPolicy } from '../policies/model';
import type { CanaryStatus } from '../canary/rollout';
import { canaryRoute } from '../canary/rollout';
import type { Scrape } from '../canary/source';
import {
  REQUESTS_TOTAL, REQUEST_DURATION, canonicalService, counterDeltas, histogramQuantile, isFailure, type Bucket, type Labels,
} from '../canary/series';

export interface StoreSnapshot {
  services: Service[];
  policies: TrafficPolicy[];
  endpoints: EndpointRecord[];
  nodes: NodeRecord[];
  subnets: SubnetLease[];
  canaries: CanaryStatus[];
}

export const emptySnapshot = (): StoreSnapshot => ({ services: [], policies: [], endpoints: [], nodes: [], subnets: [], canaries: [] });

export interface Stats {
  rps: number;
  /** Failed (5xx or no response) per second. */
  errorRps: number;
  /** Percent; null without requests. */
  successRate: number | null;
  p99Ms: number | null;
}

export interface SubsetStats extends Stats { subset: string }

export interface GraphNode extends Stats {
  id: string; // "name.namespace"
  name: string;
  namespace: string;
  kind: 'service' | 'workload';
  subsets: SubsetStats[];
}

export interface SplitEntry { subset: string; weight: number }

export interface GraphEdge extends Stats {
  id: string; // "source->target"
  source: string;
  target: string;
  subsets: SubsetStats[];
  /** The split the target's TrafficPolicy asks for (canary route or first route). */
  split?: SplitEntry[];
  canary?: { subset: string; weight: number; phase: string };
}

export interface Graph {
  at: number;
  windowMs: number;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

interface Acc { reqs: number; fails: number; buckets: Map<number, number> }
const acc = (): Acc => ({ reqs: 0, fails: 0, buckets: new Map() });

function toStats(a: Acc, seconds: number): Stats {
  const buckets: Bucket[] = [...a.buckets.entries()].map(([le, count]) => ({ le, count })).sort((x, y) => x.le - y.le);
  const p99 = histogramQuantile(0.99, buckets);
  return {
    rps: seconds > 0 ? a.reqs / seconds : 0,
    errorRps: seconds > 0 ? a.fails / seconds : 0,
    successRate: a.reqs > 0 ? (100 * (a.reqs - a.fails)) / a.reqs : null,
    p99Ms: p99 === null ? null : p99 * 1000,
  };
}

const sourceId = (l: Labels) => `${l.source_workload || 'unknown'}.${l.source_namespace || 'default'}`;

/** The split a TrafficPolicy asks for on its canary route (or its first route). */
export function policySplit(p: TrafficPolicy): SplitEntry[] | undefined {
  try {
    const route = p.spec.canary ? canaryRoute(p) : p.spec.routes?.[0];
    const backends = route?.backends.filter((b) => b.subset);
    return backends && backends.length > 1 ? backends.map((b) => ({ subset: b.subset, weight: b.weight })) : undefined;
  } catch {
    return undefined;
  }
}

export function policyFor(snapshot: StoreSnapshot, serviceId: string): TrafficPolicy | undefined {
  return snapshot.policies.find((p) => canonicalService(p.spec.service, p.metadata.namespace) === serviceId);
}

/**
 * The service graph over the window prev..cur. Each (caller, callee) pair is
 * counted once: from the caller's sidecar (outbound) when it has one, else
 * from the callee's (inbound), so a call seen by both sides is not doubled.
 */
export function buildGraph(prev: Scrape | undefined, cur: Scrape, snapshot: StoreSnapshot): Graph {
  const seconds = prev ? (cur.at - prev.at) / 1000 : 0;
  type Key = string; // source \0 target \0 subset
  const out = new Map<Key, Acc>();
  const inb = new Map<Key, Acc>();
  const add = (m: Map<Key, Acc>, k: Key, f: (a: Acc) => void) => { let a = m.get(k); if (!a) { a = acc(); m.set(k, a); } f(a); };
  const keyOf = (l: Labels) => `${sourceId(l)}\0${canonicalService(l.destination_service ?? 'unknown')}\0${l.destination_subset ?? ''}`;
  for (const d of counterDeltas(prev, cur, REQUESTS_TOTAL, (l) => !!l.destination_service)) {
    add(d.labels.direction === 'outbound' ? out : inb, keyOf(d.labels), (a) => { a.reqs += d.value; if (isFailure(d.labels)) a.fails += d.value; });
  }
  for (const d of counterDeltas(prev, cur, `${REQUEST_DURATION}_bucket`, (l) => !!l.destination_service)) {
    const le = d.labels.le === '+Inf' ? Infinity : Number(d.labels.le);
    add(d.labels.direction === 'outbound' ? out : inb, keyOf(d.labels), (a) => a.buckets.set(le, (a.buckets.get(le) ?? 0) + d.value));
  }
  // Pairs the caller reports win over what the callee saw of them.
  const pairsOut = new Set([...out.keys()].map((k) => k.split('\0').slice(0, 2).join('\0')));
  const merged = new Map(out);
  for (const [k, a] of inb) if (!pairsOut.has(k.split('\0').slice(0, 2).join('\0'))) merged.set(k, a);

  const edgeAcc = new Map<string, { total: Acc; subsets: Map<string, Acc> }>();
  const nodeAcc = new Map<string, { total: Acc; subsets: Map<string, Acc> }>();
  const fold = (into: Acc, a: Acc) => {
    into.reqs += a.reqs;
    into.fails += a.fails;
    for (const [le, c] of a.buckets) into.buckets.set(le, (into.buckets.get(le) ?? 0) + c);
  };
  const bump = (m: Map<string, { total: Acc; subsets: Map<string, Acc> }>, k: string, subset: string, a: Acc) => {
    let e = m.get(k);
    if (!e) { e = { total: acc(), subsets: new Map() }; m.set(k, e); }
    fold(e.total, a);
    if (subset) { let s = e.subsets.get(subset); if (!s) { s = acc(); e.subsets.set(subset, s); } fold(s, a); }
  };
  for (const [k, a] of merged) {
    const [src, dst, subset] = k.split('\0');
    bump(edgeAcc, `${src}->${dst}`, subset, a);
    bump(nodeAcc, dst, subset, a);
  }

  const nodes = new Map<string, GraphNode>();
  const serviceIds = new Set(snapshot.services.map((s) => `${s.metadata.name}.${s.metadata.namespace}`));
  const ensureNode = (id: string) => {
    if (nodes.has(id)) return nodes.get(id)!;
    const [name, namespace = 'default'] = id.split('.');
    const n = nodeAcc.get(id);
    const node: GraphNode = {
      id, name, namespace,
      kind: serviceIds.has(id) || n ? 'service' : 'workload',
      ...toStats(n?.total ?? acc(), seconds),
      subsets: [...(n?.subsets ?? new Map<string, Acc>()).entries()].map(([subset, a]) => ({ subset, ...toStats(a, seconds) })).sort((x, y) => x.subset.localeCompare(y.subset)),
    };
    nodes.set(id, node);
    return node;
  };
  for (const id of serviceIds) ensureNode(id);
  const edges: GraphEdge[] = [];
  for (const [id, e] of edgeAcc) {
    const [source, target] = id.split('->');
    ensureNode(source);
    ensureNode(target);
    const policy = policyFor(snapshot, target);
    const split = policy ? policySplit(policy) : undefined;
    const c = policy?.spec.canary;
    const status = c ? snapshot.canaries.find((s) => s.namespace === policy!.metadata.namespace && s.name === policy!.metadata.name) : undefined;
    edges.push({
      id, source, target,
      ...toStats(e.total, seconds),
      subsets: [...e.subsets.entries()].map(([subset, a]) => ({ subset, ...toStats(a, seconds) })).sort((x, y) => x.subset.localeCompare(y.subset)),
      split,
      canary: c ? { subset: c.subset, weight: split?.find((s) => s.subset === c.subset)?.weight ?? 0, phase: status?.phase ?? 'Pending' } : undefined,
    });
  }
  return {
    at: cur.at,
    windowMs: prev ? cur.at - prev.at : 0,
    nodes: [...nodes.values()].sort((a, b) => a.id.localeCompare(b.id)),
    edges: edges.sort((a, b) => a.id.localeCompare(b.id)),
  };
}

export interface EndpointView {
  pod: string;
  node: string;
  ips: string[];
  ready: boolean;
  subsets: string[];
  /** Worst breaker state any sidecar reports for it: closed, open or half-open. */
  breaker: 'closed' | 'open' | 'half-open' | 'unknown';
  /** Sidecars that currently eject it. */
  ejectedBy: number;
}

const BREAKER = ['closed', 'open', 'half-open'] as const;

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const keys = Object.keys(selector);
  return keys.length > 0 && keys.every((k) => labels[k] === selector[k]);
}

/** Endpoints of a service with their subsets and the breaker/ejection state the sidecars report. */
export function serviceEndpoints(snapshot: StoreSnapshot, cur: Scrape | undefined, serviceId: string): EndpointView[] {
  const svc = snapshot.services.find((s) => `${s.metadata.name}.${s.metadata.namespace}` === serviceId);
  const policy = policyFor(snapshot, serviceId);
  const eps = svc ? snapshot.endpoints.filter((e) => e.namespace === svc.metadata.namespace && matches(svc.spec.selector, e.labels)) : [];
  const breakerOf = new Map<string, number>();
  const ejected = new Map<string, number>();
  for (const t of cur?.targets ?? []) {
    for (const s of t.samples ?? []) {
      if (canonicalService(s.labels.destination_service ?? '') !== serviceId) continue;
      const ip = (s.labels.endpoint ?? '').replace(/^\[?([^\]]*?)\]?(:\d+)?$/, '$1');
      if (s.name === 'meshwork_circuit_breaker_state') {
        // Open (1) is worse than half-open (2), which is worse than closed (0).
        const rank = (v: number) => (v === 1 ? 2 : v === 2 ? 1 : 0);
        const prev = breakerOf.get(ip);
        if (prev === undefined || rank(s.value) > rank(prev)) breakerOf.set(ip, s.value);
      } else if (s.name === 'meshwork_outlier_ejected' && s.value === 1) {
        ejected.set(ip, (ejected.get(ip) ?? 0) + 1);
      }
    }
  }
  return eps.map((e) => {
    const b = e.ips.map((ip) => breakerOf.get(ip)).find((v) => v !== undefined);
    return {
      pod: `${e.namespace}/${e.pod}`,
      node: e.node,
      ips: e.ips,
      ready: e.ready,
      subsets: (policy?.spec.subsets ?? []).filter((s) => Object.entries(s.labels).every(([k, v]) => e.labels[k] === v)).map((s) => s.name),
      breaker: b === undefined ? 'unknown' : BREAKER[b] ?? 'unknown',
      ejectedBy: e.ips.reduce((n, ip) => n + (ejected.get(ip) ?? 0), 0),
    };
  });
}

export interface DnsView { target: string; qps: number; errorQps: number }

/** Query rate of every DNS server that exposes meshwork_dns_queries_total. */
export function dnsView(prev: Scrape | undefined, cur: Scrape): DnsView[] {
  const seconds = prev ? (cur.at - prev.at) / 1000 : 0;
  const by = new Map<string, DnsView>();
  for (const d of counterDeltas(prev, cur, 'meshwork_dns_queries_total')) {
    let v = by.get(d.target);
    if (!v) { v = { target: d.target, qps: 0, errorQps: 0 }; by.set(d.target, v); }
    const rate = seconds > 0 ? d.value / seconds : 0;
    v.qps += rate;
    if (d.labels.rcode && !/^(NOERROR|NXDOMAIN|0|3)$/i.test(d.labels.rcode)) v.errorQps += rate;
  }
  return [...by.values()];
}
