/**
 * Every metric of the DNS server, in one place. The hot path only bumps plain
 * counters in a Map; prom-client reads them at scrape time through `collect`,
 * so answering a query never pays for label hashing.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { rcodeName, typeName } from './wire';

export interface DnsMetrics {
  query(type: number, rcode: number): void;
  cacheHit(cache: 'packet' | 'records'): void;
  cacheMiss(): void;
  stale(): void;
  truncated(): void;
  dropped(reason: 'response' | 'short' | 'overload'): void;
  upstreamLatency(upstream: string, seconds: number): void;
  upstreamFailure(upstream: string, reason: string): void;
  /** Adds tallies reported by a worker process. */
  merge(t: Tallies): void;
  /** Takes and resets this process's tallies (workers ship them to the primary). */
  drain(): Tallies;
}

export interface Tallies {
  queries: Record<string, number>;
  hits: Record<string, number>;
  misses: number;
  stale: number;
  truncated: number;
  dropped: Record<string, number>;
  /** Upstream observations not yet folded into the histogram/counter ([label, seconds] / "label|reason"). */
  upstreamSeconds: Array<[string, number]>;
  upstreamFailures: Record<string, number>;
}

const empty = (): Tallies => ({ queries: {}, hits: {}, misses: 0, stale: 0, truncated: 0, dropped: {}, upstreamSeconds: [], upstreamFailures: {} });

/** `ship`: this process (a worker) hands its tallies to another through drain() instead of observing them. */
export function createDnsMetrics(registry: Registry = new Registry(), opts: { ship?: boolean } = {}): DnsMetrics {
  let t = empty();
  const total = empty();
  const add = (into: Tallies, from: Tallies): void => {
    for (const [k, v] of Object.entries(from.queries)) into.queries[k] = (into.queries[k] ?? 0) + v;
    for (const [k, v] of Object.entries(from.hits)) into.hits[k] = (into.hits[k] ?? 0) + v;
    for (const [k, v] of Object.entries(from.dropped)) into.dropped[k] = (into.dropped[k] ?? 0) + v;
    into.misses += from.misses; into.stale += from.stale; into.truncated += from.truncated;
  };
  // Set only in processes that ship their tallies elsewhere (workers): upstream events are queued, not observed.
  const shipping = !!opts.ship;
  // Fold the live tallies into the running totals before any read.
  const fold = (): Tallies => { add(total, t); t = empty(); return total; };

  new Counter({
    name: 'meshwork_dns_queries_total', help: 'DNS queries answered, by query type and response code.', labelNames: ['type', 'rcode'], registers: [registry],
    collect() {
      this.reset();
      for (const [k, v] of Object.entries(fold().queries)) this.inc({ type: typeName(Math.floor(Number(k) / 4096)), rcode: rcodeName(Number(k) % 4096) }, v);
    },
  });
  new Counter({
    name: 'meshwork_dns_cache_hits_total', help: 'Answers served from a cache (packet: encoded replies; records: forwarded records).', labelNames: ['cache'], registers: [registry],
    collect() { this.reset(); for (const [k, v] of Object.entries(fold().hits)) this.inc({ cache: k }, v); },
  });
  new Counter({
    name: 'meshwork_dns_cache_misses_total', help: 'Forwarded questions not found in the record cache.', registers: [registry],
    collect() { this.reset(); this.inc(fold().misses); },
  });
  new Counter({
    name: 'meshwork_dns_stale_answers_total', help: 'Expired answers served because every upstream failed.', registers: [registry],
    collect() { this.reset(); this.inc(fold().stale); },
  });
  new Counter({
    name: 'meshwork_dns_truncated_total', help: 'UDP replies truncated (TC set) to fit the client payload size.', registers: [registry],
    collect() { this.reset(); this.inc(fold().truncated); },
  });
  new Counter({
    name: 'meshwork_dns_dropped_total', help: 'Packets dropped without a reply, by reason.', labelNames: ['reason'], registers: [registry],
    collect() { this.reset(); for (const [k, v] of Object.entries(fold().dropped)) this.inc({ reason: k }, v); },
  });
  const latency = new Histogram({
    name: 'meshwork_dns_upstream_duration_seconds', help: 'Time for an upstream to answer a forwarded query.', labelNames: ['upstream'], registers: [registry],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  });
  const failures = new Counter({
    name: 'meshwork_dns_upstream_failures_total', help: 'Forwarded queries an upstream failed to answer, by reason.', labelNames: ['upstream', 'reason'], registers: [registry],
  });

  return {
    // Integer keys keep this a fast elements-store increment on the hot path.
    query(type, rcode) { const k = type * 4096 + rcode; t.queries[k] = (t.queries[k] ?? 0) + 1; },
    cacheHit(cache) { t.hits[cache] = (t.hits[cache] ?? 0) + 1; },
    cacheMiss() { t.misses++; },
    stale() { t.stale++; },
    truncated() { t.truncated++; },
    dropped(reason) { t.dropped[reason] = (t.dropped[reason] ?? 0) + 1; },
    upstreamLatency(upstream, seconds) { if (shipping) { if (t.upstreamSeconds.length < 10_000) t.upstreamSeconds.push([upstream, seconds]); } else latency.observe({ upstream }, seconds); },
    upstreamFailure(upstream, reason) {
      if (!shipping) { failures.inc({ upstream, reason }); return; }
      const k = `${upstream}|${reason}`;
      t.upstreamFailures[k] = (t.upstreamFailures[k] ?? 0) + 1;
    },
    merge(from) {
      add(t, from);
      for (const [upstream, s] of from.upstreamSeconds ?? []) latency.observe({ upstream }, s);
      for (const [k, n] of Object.entries(from.upstreamFailures ?? {})) { const i = k.lastIndexOf('|'); failures.inc({ upstream: k.slice(0, i), reason: k.slice(i + 1) }, n); }
    },
    drain() { const out = t; t = empty(); return out; },
  };
}
