/**
 * The HTTP request path, one small layer per concern, composed once:
 *
 *   route -> fault -> timeout -> mirror -> split -> pool -> retry -> balance -> breaker -> outlier -> forward
 *
 * Logical layers first (which route, which subset, how many tries), then the
 * concrete ones (which endpoint, is its gate open), then the socket. A layer
 * with nothing configured for the request passes straight through.
 */
import type { Agent } from 'node:http';
import type { RetryOn, RetryPolicy } from '../policies/model';
import type { Random } from './balancers';
import type { BreakerSet } from './breakers';
import type { CompiledRoute, SubsetRuntime, Upstream } from './catalog';
import { compose, type Handler, type Layer, type ProxyRequest, type RequestCtx, type UpstreamResponse } from './context';
import { BreakerOpenError, FaultAbortError, NoHealthyUpstreamError, OverflowError, RequestTimeoutError, UpstreamError } from './errors';
import { createForward, sendTo } from './forward';
import type { UpstreamPool } from './upstream';
import type { Direction, SidecarMetrics } from './metrics';
import { OutlierDetector } from './outlier';
import type { Deadlines } from './deadlines';

export interface StackDeps {
  agent: Agent;
  /** Keep-alive sockets of the fast path. */
  pool: UpstreamPool;
  breakers: BreakerSet;
  outliers: OutlierDetector;
  random: Random;
  now: () => number;
  metrics?: SidecarMetrics;
  direction: Direction;
  /** Shared deadline lists for the overall timeout (no Node timer per request). */
  deadlines: Deadlines;
}

export function createStack(deps: StackDeps): Handler {
  return compose([
    routeLayer(), faultLayer(deps), timeoutLayer(deps), mirrorLayer(deps), splitLayer(deps),
    poolLayer(deps), retryLayer(deps), balanceLayer(deps), breakerLayer(deps), outlierLayer(deps),
  ], createForward(deps.agent, deps.pool));
}

// ---- route: first route whose match holds (a route without matches matches all).
export function matchRoute(up: Upstream, req: ProxyRequest): CompiledRoute | undefined {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  for (const r of up.routes) {
    if (r.matches.length === 0) return r;
    for (const m of r.matches) {
      if (m.method && m.method !== req.method) continue;
      if (m.path && !m.path(path)) continue;
      let ok = true;
      for (const h of m.headers) {
        const v = req.headers[h.name];
        if (!h.test(Array.isArray(v) ? v.join(',') : v)) { ok = false; break; }
      }
      if (ok) return r;
    }
  }
  return undefined;
}

class NoRouteError extends NoHealthyUpstreamError {}

function routeLayer(): Layer {
  return (next) => (ctx) => {
    const r = matchRoute(ctx.upstream, ctx.req);
    if (!r) return Promise.reject(new NoRouteError(ctx.upstream.name, ''));
    ctx.route = r;
    return next(ctx);
  };
}

// ---- fault: delay and/or abort a share of requests (route fault, else the policy's).
function faultLayer(deps: StackDeps): Layer {
  return (next) => {
    const faulty = async (f: Fault, ctx: RequestCtx): Promise<UpstreamResponse> => {
      if (f.delay && deps.random() * 100 < f.delay.percentage) {
        await new Promise((r) => setTimeout(r, f.delay!.fixedDelayMs));
        (ctx.extraHeaders ??= {})['x-meshwork-fault'] = 'delay';
      }
      if (f.abort && deps.random() * 100 < f.abort.percentage) throw new FaultAbortError(f.abort.httpStatus);
      return next(ctx);
    };
    // No fault configured: no extra promise on the hot path.
    return (ctx) => {
      const f = ctx.route!.spec.fault ?? ctx.upstream.policy.fault;
      return f ? faulty(f, ctx) : next(ctx);
    };
  };
}
type Fault = NonNullable<Upstream['policy']['fault']>;

// ---- timeout: the whole request, all tries included, up to response headers.
function timeoutLayer(deps: StackDeps): Layer {
  return (next) => (ctx) => {
    const ms = ctx.route!.spec.timeoutMs ?? ctx.upstream.policy.timeoutMs;
    if (!ms) return next(ctx);
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const deadline = deps.deadlines.add(ms, () => {
        ctx.expired = true;
        ctx.cancel?.();
        reject(new RequestTimeoutError(ctx.upstream.name, ms));
      });
      attempt(next, ctx).then((res) => {
        deps.deadlines.cancel(deadline);
        if (ctx.expired) res.resume(); else resolve(res);
      }, (err) => { deps.deadlines.cancel(deadline); reject(err); });
    });
  };
}

// ---- mirror: a copy of a share of requests to another subset; its outcome is ignored.
function mirrorLayer(deps: StackDeps): Layer {
  return (next) => (ctx) => {
    const m = ctx.route!.mirror;
    if (m && ctx.body && deps.random() * 100 < m.percentage) {
      const ep = m.subset.balancer.pick({ now: deps.now() });
      if (ep) {
        const headers = { ...ctx.req.headers } as Record<string, string | string[]>;
        delete headers.connection;
        if (typeof headers.host === 'string') headers.host = shadowHost(headers.host);
        const shadow: RequestCtx = { req: ctx.req, body: ctx.body, upstream: ctx.upstream, sourceIp: ctx.sourceIp, perTryTimeoutMs: 10_000 };
        sendTo(deps.agent, shadow, ep.address, ep.port, ep.key, headers).then((res) => res.resume(), () => { /* a mirror never affects the caller */ });
      }
    }
    return next(ctx);
  };
}

/** As Envoy does, a mirrored request's Host gets "-shadow" so the receiver can tell. */
function shadowHost(host: string): string {
  const i = host.lastIndexOf(':');
  return i > 0 && !host.endsWith(']') ? `${host.slice(0, i)}-shadow${host.slice(i)}` : `${host}-shadow`;
}

// ---- split: weighted choice among the route's subsets, skipping subsets with no usable endpoint.
function splitLayer(deps: StackDeps): Layer {
  return (next) => (ctx) => {
    const backends = ctx.route!.backends;
    if (backends.length === 1) { ctx.subset = backends[0].subset; return next(ctx); }
    const now = deps.now();
    let total = 0;
    for (const b of backends) if (b.weight > 0 && hasUsable(b.subset, now)) total += b.weight;
    let chosen: SubsetRuntime | undefined;
    if (total > 0) {
      let r = deps.random() * total;
      for (const b of backends) {
        if (b.weight <= 0 || !hasUsable(b.subset, now)) continue;
        r -= b.weight;
        if (r < 0) { chosen = b.subset; break; }
      }
    }
    ctx.subset = chosen ?? backends.find((b) => b.weight > 0)?.subset ?? backends[0].subset;
    return next(ctx);
  };
}

function hasUsable(s: SubsetRuntime, now: number): boolean {
  for (const e of s.endpoints) if (e.available(now)) return true;
  return false;
}

// ---- pool: at most maxConnections requests upstream at once (HTTP/1.1: one per connection),
// at most maxPendingRequests waiting; beyond that, fail fast.
function poolLayer(deps: StackDeps): Layer {
  return (next) => (ctx) => {
    const pool = ctx.upstream.policy.connectionPool;
    const max = pool?.maxConnections;
    if (!max) return next(ctx);
    const st = ctx.upstream.state;
    // The slot is held until the response body is done (or the attempt failed).
    const release = () => {
      const w = st.waiting.shift();
      if (w) w(); else st.active--;
    };
    const run = () => attempt(next, ctx).then((res) => { res.once('close', release); return res; }, (err) => { release(); throw err; });
    if (st.active < max) { st.active++; return run(); }
    if (st.waiting.length >= (pool.maxPendingRequests ?? Infinity)) {
      deps.metrics?.overflow(ctx.upstream.name, 'pending');
      return Promise.reject(new OverflowError(ctx.upstream.name, 'pending'));
    }
    return new Promise<void>((r) => st.waiting.push(r)).then(run);
  };
}

/** next(ctx) with a synchronous throw turned into a rejection, as an async function would. */
function attempt(next: Handler, ctx: RequestCtx): Promise<UpstreamResponse> {
  try { return next(ctx); } catch (err) { return Promise.reject(err); }
}

// ---- retry: another attempt, to another endpoint when one exists, on the configured conditions, within budget.
function retryLayer(deps: StackDeps): Layer {
  return (next) => (ctx) => {
    const policy = ctx.route!.spec.retries ?? ctx.upstream.policy.retries;
    if (!policy || policy.attempts <= 0 || !ctx.body) return next(ctx);
    ctx.perTryTimeoutMs = policy.perTryTimeoutMs;
    return new Tries(deps, next, ctx, policy).run();
  };
}

/** One request's attempts. A promise chain, not an async loop: the first try's success costs one `then`. */
class Tries {
  private n = 0;
  private retrying = false;
  private readonly st: Upstream['state'];

  constructor(private readonly deps: StackDeps, private readonly next: Handler, private readonly ctx: RequestCtx, private readonly policy: RetryPolicy) {
    this.st = ctx.upstream.state;
    this.st.inflight++;
  }

  run(): Promise<UpstreamResponse> { return attempt(this.next, this.ctx).then(this.onResponse, this.onError); }

  private readonly onResponse = (res: UpstreamResponse): UpstreamResponse | Promise<UpstreamResponse> => {
    const reason = statusReason(res.statusCode!, this.policy.retryOn);
    if (!reason || this.last()) { this.done(); return res; }
    res.resume();
    return this.again(reason);
  };

  private readonly onError = (err: unknown): Promise<UpstreamResponse> => {
    const reason = errorReason(err, this.policy.retryOn);
    if (!reason || this.last()) { this.done(); throw err; }
    return this.again(reason);
  };

  /** No further try: out of attempts, out of time, or over the retry budget. */
  private last(): boolean {
    return this.n >= this.policy.attempts || !!this.ctx.expired || !budgetAllows(this.st, this.policy, this.deps.now());
  }

  private again(reason: string): Promise<UpstreamResponse> {
    this.deps.metrics?.retry(this.deps.direction, this.ctx.upstream.name, reason);
    if (!this.retrying) { this.retrying = true; this.st.retriesInflight++; }
    this.n++;
    return this.run();
  }

  private done(): void {
    this.st.inflight--;
    if (this.retrying) this.st.retriesInflight--;
  }
}

function statusReason(status: number, on: RetryOn[]): string | undefined {
  if (status >= 500 && on.includes('5xx')) return '5xx';
  if ((status === 502 || status === 503 || status === 504) && on.includes('gateway-error')) return 'gateway-error';
  if (status === 409 && on.includes('retriable-4xx')) return 'retriable-4xx';
  return undefined;
}

function errorReason(err: unknown, on: RetryOn[]): string | undefined {
  // An endpoint whose gate shut between pick and fire, or none usable right now: another try may find one.
  if (err instanceof BreakerOpenError) return 'breaker-open';
  if (!(err instanceof UpstreamError)) return undefined;
  const k = err.kind;
  if (on.includes(k as RetryOn)) return k;
  if (k === 'connect-failure' && on.includes('refused-stream')) return k;
  if (on.includes('5xx') || on.includes('gateway-error')) return k;
  return undefined;
}

/** Retries in flight may add budgetPercent of the requests in flight; minRetriesPerSecond always pass. */
function budgetAllows(st: Upstream['state'], p: RetryPolicy, now: number): boolean {
  if (now - st.retryWindowStart >= 1000) { st.retryWindowStart = now; st.retriesInWindow = 0; }
  const ok = st.retriesInWindow < p.minRetriesPerSecond || st.retriesInflight < (st.inflight * p.budgetPercent) / 100;
  if (ok) st.retriesInWindow++;
  return ok;
}

// ---- balance: the subset's balancer picks, avoiding endpoints earlier tries used.
function balanceLayer(deps: StackDeps): Layer {
  // Plain promise chains rather than async/await: two fewer promise hops per attempt.
  return (next) => (ctx) => {
    try {
      const subset = ctx.subset!;
      const now = deps.now();
      // The set of tried endpoints exists only from the second attempt on.
      let tried = ctx.tried;
      if (!tried && ctx.endpoint) tried = ctx.tried = new Set([ctx.endpoint]);
      const picked = subset.balancer.pick({ now, exclude: tried, hashKey: hashKeyOf(ctx) });
      if (!picked) return Promise.reject(new NoHealthyUpstreamError(ctx.upstream.name, subset.name));
      ctx.endpoint = picked;
      tried?.add(picked);
      picked.inflight++;
      const lb = subset.lb;
      return attempt(next, ctx).then((res) => {
        picked.inflight--;
        if (lb.type === 'ewma') picked.observeLatency(deps.now() - now, lb.decayMs || 10_000, deps.now());
        return res;
      }, (err) => { picked.inflight--; throw err; });
    } catch (err) {
      return Promise.reject(err);
    }
  };
}

function hashKeyOf(ctx: RequestCtx): string | undefined {
  const lb = ctx.subset!.lb;
  if (lb.type !== 'ring-hash') return undefined;
  const on = lb.hashOn;
  if ('header' in on) { const v = ctx.req.headers[on.header.toLowerCase()]; return Array.isArray(v) ? v[0] : v; }
  if ('cookie' in on) return cookie(ctx.req.headers.cookie, on.cookie);
  return ctx.sourceIp;
}

function cookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

// ---- breaker: the attempt runs through the endpoint's circuit breaker, when the policy has one.
function breakerLayer(deps: StackDeps): Layer {
  return (next) => (ctx) => {
    const spec = ctx.upstream.policy.circuitBreaker;
    if (!spec) return next(ctx);
    return deps.breakers.run(ctx.upstream.name, ctx.endpoint!, spec, () => next(ctx));
  };
}

// ---- outlier: consecutive 5xx / gateway errors eject the endpoint (for longer each time, decaying while healthy).
function outlierLayer(deps: StackDeps): Layer {
  return (next) => (ctx) => {
    const spec = ctx.upstream.policy.outlierDetection;
    if (!spec) return next(ctx);
    return attempt(next, ctx).then((res) => {
      deps.outliers.record(ctx.upstream, ctx.endpoint!, spec, res.statusCode!);
      return res;
    }, (err) => {
      if (err instanceof UpstreamError) deps.outliers.record(ctx.upstream, ctx.endpoint!, spec, 502);
      throw err;
    });
  };
}
