/**
 * The dashboard: one self-contained page (agent/dashboard-page.ts) and the
 * small JSON API it polls. `createDashboard()` returns a request handler the
 * agent's HTTP server mounts (it answers only under `basePath` and returns
 * false for anything else) with start/stop for its sampler: every `sampleMs`
 * it scrapes the metrics source, reads the store, and keeps the last
 * `historyMs` of per-service rate, errors and p99 in memory for the charts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Store } from '../store/types';
import { keys, ROOT } from '../store/keys';
import type { EndpointRecord, NodeRecord, SubnetLease } from '../store/records';
import type { Service, TrafficPolicy } from '../policies/model';
import type { MetricsSource, Scrape } from '../canary/source';
import { canaryKeys, type CanaryStatus } from '../canary/rollout';
import { withContext } from '../lib/errors';
import {
  buildGraph, dnsView, emptySnapshot, policyFor, policySplit, serviceEndpoints,
  type Graph, type StoreSnapshot,
} from './dashboard-model';
import { DASHBOARD_PAGE } from './dashboard-page';

export interface DashboardDeps {
  metrics: MetricsSource;
  store: Store;
  /** Where the page lives (default "/dashboard"; "" mounts it at the root). */
  basePath?: string;
  sampleMs?: number;
  historyMs?: number;
  now?: () => number;
}

export interface HistoryPoint { t: number; rps: number; errorRps: number; p99Ms: number | null; subsets: Record<string, number> }

export type Dashboard = ((req: IncomingMessage, res: ServerResponse) => boolean) & {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One sampling step (what the timer runs); exposed for embedding and tests. */
  sample(): Promise<void>;
};

/** A fixed-size FIFO: the newest `cap` items. */
export class Ring<T> {
  private items: T[] = [];
  constructor(private readonly cap: number) {}
  push(x: T): void { this.items.push(x); if (this.items.length > this.cap) this.items.shift(); }
  toArray(): T[] { return [...this.items]; }
}

/** Reads a stored document: the bare JSON document, or a wrapper holding it under one property. */
function decodeDoc<T extends { kind: string }>(value: string, kind: string): T | undefined {
  let v: any;
  try { v = JSON.parse(value); } catch { return undefined; }
  // `policy apply` stores only validated documents; anything else in the store is skipped, never trusted.
  const shaped = (x: any): boolean => x?.kind === kind && typeof x.metadata?.name === 'string' && typeof x.metadata?.namespace === 'string' && typeof x.spec === 'object' && x.spec !== null;
  if (shaped(v)) return v;
  if (v && typeof v === 'object') for (const x of Object.values(v)) if (shaped(x)) return x as T;
  return undefined;
}

function parseAll<T>(items: { value: string }[], parse: (v: string) => T | undefined): T[] {
  const out: T[] = [];
  for (const kv of items) { const x = parse(kv.value); if (x !== undefined) out.push(x); }
  return out;
}

const json = (v: string) => { try { return JSON.parse(v); } catch { return undefined; } };

export async function readSnapshot(store: Store): Promise<StoreSnapshot> {
  const [svc, tp, eps, nodes, subnets, canaries] = await Promise.all([
    store.list(keys.policies('Service')), store.list(keys.policies('TrafficPolicy')), store.list(keys.endpoints()),
    store.list(keys.nodes()), store.list(`${ROOT}subnets/`), store.list(canaryKeys.all()),
  ]);
  return {
    services: parseAll(svc.items, (v) => decodeDoc<Service>(v, 'Service')),
    policies: parseAll(tp.items, (v) => decodeDoc<TrafficPolicy>(v, 'TrafficPolicy')),
    endpoints: parseAll(eps.items, (v) => json(v) as EndpointRecord | undefined),
    nodes: parseAll(nodes.items, (v) => json(v) as NodeRecord | undefined),
    subnets: parseAll(subnets.items, (v) => json(v) as SubnetLease | undefined),
    canaries: parseAll(canaries.items, (v) => json(v) as CanaryStatus | undefined),
  };
}

export function createDashboard(deps: DashboardDeps): Dashboard {
  const base = (deps.basePath ?? '/dashboard').replace(/\/$/, '');
  const sampleMs = deps.sampleMs ?? 2000;
  const cap = Math.max(2, Math.ceil((deps.historyMs ?? 10 * 60_000) / sampleMs));
  const now = deps.now ?? Date.now;
  const history = new Map<string, Ring<HistoryPoint>>();
  let prev: Scrape | undefined;
  let cur: Scrape | undefined;
  let snapshot = emptySnapshot();
  let graph: Graph = { at: 0, windowMs: 0, nodes: [], edges: [] };
  let errors: string[] = [];
  let lastSampleAt = -Infinity;
  let inflight: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;

  async function sampleNow(): Promise<void> {
    const errs: string[] = [];
    const [scrape, snap] = await Promise.all([
      deps.metrics.scrape().catch((e) => { errs.push(withContext('metrics', e).message); return undefined; }),
      readSnapshot(deps.store).catch((e) => { errs.push(withContext('store', e).message); return undefined; }),
    ]);
    lastSampleAt = now();
    if (snap) snapshot = snap;
    if (scrape) {
      for (const t of scrape.targets) if (t.error) errs.push(`${t.target}: ${t.error}`);
      prev = cur;
      cur = scrape;
      if (prev) {
        graph = buildGraph(prev, cur, snapshot);
        for (const n of graph.nodes) {
          let r = history.get(n.id);
          if (!r) { r = new Ring(cap); history.set(n.id, r); }
          r.push({ t: graph.at, rps: n.rps, errorRps: n.errorRps, p99Ms: n.p99Ms, subsets: Object.fromEntries(n.subsets.map((s) => [s.subset, s.rps])) });
        }
      } else {
        graph = buildGraph(undefined, cur, snapshot);
      }
    } else if (cur) {
      // Keep the last graph, but the split and canary phase come from the fresh store snapshot.
      graph = { ...graph, edges: graph.edges.map((e) => ({ ...e, split: refreshSplit(e.target) ?? e.split })) };
    }
    errors = errs;
  }

  function refreshSplit(target: string) {
    const p = policyFor(snapshot, target);
    return p ? policySplit(p) : undefined;
  }

  /** One sample at a time; concurrent callers share it. */
  function sample(): Promise<void> {
    inflight ??= sampleNow().finally(() => { inflight = undefined; });
    return inflight;
  }

  /** Without a running sampler, API calls sample on demand (at most once per sampleMs). */
  async function fresh(): Promise<void> {
    if (!timer && now() - lastSampleAt >= sampleMs) await sample();
  }

  function serviceView(id: string) {
    const policy = policyFor(snapshot, id);
    const svc = snapshot.services.find((s) => `${s.metadata.name}.${s.metadata.namespace}` === id);
    const node = graph.nodes.find((n) => n.id === id);
    if (!svc && !node) return undefined;
    const canary = policy ? snapshot.canaries.find((c) => c.namespace === policy.metadata.namespace && c.name === policy.metadata.name) : undefined;
    return {
      id,
      service: svc ? { ports: svc.spec.ports, selector: svc.spec.selector, clusterIP: svc.spec.clusterIP ?? null, type: svc.spec.type } : null,
      stats: node ?? null,
      callers: graph.edges.filter((e) => e.target === id),
      calls: graph.edges.filter((e) => e.source === id),
      policy: policy ? {
        name: `${policy.metadata.namespace}/${policy.metadata.name}`,
        subsets: policy.spec.subsets,
        routes: policy.spec.routes.map((r) => ({ name: r.name, backends: r.backends })),
        circuitBreaker: policy.spec.circuitBreaker ?? null,
        outlierDetection: policy.spec.outlierDetection ?? null,
      } : null,
      canary: canary ? { phase: canary.phase, weight: canary.weight, steps: canary.steps, subset: canary.canarySubset, lastDecision: canary.lastDecision ?? null, events: canary.events.slice(-10) } : null,
      endpoints: serviceEndpoints(snapshot, cur, id),
      history: history.get(id)?.toArray() ?? [],
      sampleMs,
    };
  }

  /** Every policy with a canary: the controller's record, or "Pending" with the policy's own weight. */
  function canaryRows() {
    return snapshot.policies.filter((p) => p.spec.canary).map((p) => {
      const c = snapshot.canaries.find((x) => x.namespace === p.metadata.namespace && x.name === p.metadata.name);
      const subset = p.spec.canary!.subset;
      const weight = policySplit(p)?.find((x) => x.subset === subset)?.weight ?? 0;
      return { policy: `${p.metadata.namespace}/${p.metadata.name}`, service: p.spec.service, subset, phase: c?.phase ?? 'Pending', weight, reason: c?.lastDecision?.reason ?? null };
    }).sort((a, b) => a.policy.localeCompare(b.policy));
  }

  function networkView() {
    const podsOn = (node: string) => snapshot.endpoints.filter((e) => e.node === node).length;
    return {
      nodes: snapshot.nodes.map((n) => ({ name: n.name, underlay: n.underlay, vtepMac: n.vtepMac ?? null, podSubnets: n.podSubnets ?? {}, dns: n.dns ?? null, pods: podsOn(n.name) })),
      subnets: snapshot.subnets,
      dns: cur ? dnsView(prev, cur) : [],
      targets: (cur?.targets ?? []).map((t) => ({ target: t.target, ok: !!t.samples, error: t.error ?? null })),
    };
  }

  const send = (res: ServerResponse, status: number, type: string, body: string) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const sendJson = (res: ServerResponse, status: number, v: unknown) => send(res, status, 'application/json', JSON.stringify(v));

  async function api(path: string, query: URLSearchParams, res: ServerResponse): Promise<void> {
    await fresh();
    switch (path) {
      case '/api/graph':
        return sendJson(res, 200, { ...graph, sampleMs, errors, canaries: canaryRows() });
      case '/api/service': {
        const id = query.get('id') ?? '';
        const v = serviceView(id);
        return v ? sendJson(res, 200, v) : sendJson(res, 404, { error: `no service "${id}" in the store or the metrics` });
      }
      case '/api/network':
        return sendJson(res, 200, networkView());
      default:
        return sendJson(res, 404, { error: `no dashboard API ${path}`, apis: ['/api/graph', '/api/service?id=name.namespace', '/api/network'] });
    }
  }

  const handler = ((req: IncomingMessage, res: ServerResponse): boolean => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (url.pathname !== base && !url.pathname.startsWith(`${base}/`)) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') { send(res, 405, 'text/plain', 'method not allowed\n'); return true; }
    // The page uses relative URLs, so it must be served from a path ending in "/".
    if (url.pathname === base) { res.writeHead(301, { location: `${base}/` }).end(); return true; }
    const rest = url.pathname.slice(base.length);
    if (rest === '/' || rest === '/index.html') { send(res, 200, 'text/html; charset=utf-8', DASHBOARD_PAGE); return true; }
    api(rest, url.searchParams, res).catch((err) => sendJson(res, 500, { error: String(err?.message ?? err) }));
    return true;
  }) as Dashboard;

  handler.sample = sample;
  handler.start = async () => {
    if (timer) return;
    await sample();
    timer = setInterval(() => { sample().catch(() => { /* reported through errors on the next success */ }); }, sampleMs);
    timer.unref();
  };
  handler.stop = async () => {
    if (timer) clearInterval(timer);
    timer = undefined;
    await inflight;
  };
  return handler;
}
