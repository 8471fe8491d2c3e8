/**
 * The record cache for forwarded answers. TTLs are honoured within a floor
 * and a ceiling; negative answers are kept for the SOA minimum (RFC 2308);
 * when every upstream fails, an expired answer is served for a bounded time
 * with a short TTL (RFC 8767). Size-bounded, oldest entry evicted first.
 */
import { RCODE, TYPE, type Rr } from './wire';
import type { Answer, Handler } from './chain';
import type { DnsMetrics } from './metrics';

export interface CacheOptions {
  /** Lowest TTL we keep a positive answer for, in seconds (default 5). */
  minTtl?: number;
  /** Highest TTL, in seconds (default 3600). */
  maxTtl?: number;
  /** Ceiling for negative answers, in seconds (default 300). */
  maxNegativeTtl?: number;
  /** How long past expiry an answer may be served when upstreams fail, in seconds (default 3600; 0 disables). */
  staleFor?: number;
  /** TTL given to a stale answer (default 30). */
  staleTtl?: number;
  maxEntries?: number;
}

interface Entry { answer: Answer; storedAt: number; ttl: number }

/** The question with its name case-folded (ASCII only, RFC 4343); type and class stay as they are. */
function keyOf(question: Buffer): string {
  const n = question.length - 4;
  return question.toString('latin1', 0, n).replace(/[A-Z]+/g, (c) => c.toLowerCase()) + question.toString('latin1', n);
}

function soaMinimum(rr: Rr): number {
  return rr.rdata.length >= 4 ? rr.rdata.readUInt32BE(rr.rdata.length - 4) : 0;
}

/** How long an answer may be cached, or undefined when it must not be. */
export function cacheTtl(a: Answer, o: Required<CacheOptions>): number | undefined {
  const clamp = (n: number, lo: number, hi: number) => Math.min(Math.max(n, lo), hi);
  if (a.rcode === RCODE.NOERROR && a.answers.length > 0) {
    return clamp(Math.min(...a.answers.map((r) => r.ttl)), o.minTtl, o.maxTtl);
  }
  if (a.rcode === RCODE.NXDOMAIN || a.rcode === RCODE.NOERROR) {
    const soa = a.authority.find((r) => r.type === TYPE.SOA);
    if (!soa) return undefined; // RFC 2308 §5: no SOA, no negative caching
    return clamp(Math.min(soa.ttl, soaMinimum(soa)), 0, o.maxNegativeTtl) || undefined;
  }
  return undefined;
}

/**
 * The answer as we serve it while cached: a positive answer's TTLs within the
 * floor and ceiling (so clients cache it as long as we do, and no longer than
 * the ceiling), a negative answer's SOA at the negative TTL (RFC 2308 §5).
 */
function bounded(a: Answer, ttl: number, o: Required<CacheOptions>): Answer {
  const clamp = (rr: Rr): Rr => ({ ...rr, ttl: Math.min(Math.max(rr.ttl, o.minTtl), o.maxTtl) });
  if (a.answers.length > 0) return { ...a, answers: a.answers.map(clamp), authority: a.authority.map(clamp), additional: a.additional.map(clamp) };
  return { ...a, authority: a.authority.map((rr) => (rr.type === TYPE.SOA ? { ...rr, ttl } : rr)) };
}

function aged(a: Answer, ageSeconds: number, ttlFloor?: number): Answer {
  const age = (rr: Rr): Rr => ({ ...rr, ttl: ttlFloor ?? Math.max(0, rr.ttl - ageSeconds) });
  return { ...a, answers: a.answers.map(age), authority: a.authority.map(age), additional: a.additional.map(age) };
}

export function createCache(opts: CacheOptions & { metrics: DnsMetrics; now?: () => number }): Handler & { size(): number; clear(): void } {
  const o: Required<CacheOptions> = {
    minTtl: opts.minTtl ?? 5, maxTtl: opts.maxTtl ?? 3600, maxNegativeTtl: opts.maxNegativeTtl ?? 300,
    staleFor: opts.staleFor ?? 3600, staleTtl: opts.staleTtl ?? 30, maxEntries: opts.maxEntries ?? 10_000,
  };
  const now = opts.now ?? Date.now;
  const entries = new Map<string, Entry>();

  const set = (key: string, e: Entry): void => {
    entries.delete(key);
    entries.set(key, e);
    while (entries.size > o.maxEntries) entries.delete(entries.keys().next().value as string);
  };

  return {
    name: 'cache',
    size: () => entries.size,
    clear: () => entries.clear(),
    async serve(q, _ctx, next) {
      const key = keyOf(q.wire);
      const e = entries.get(key);
      const t = now();
      if (e) {
        const age = (t - e.storedAt) / 1000;
        if (age < e.ttl) {
          opts.metrics.cacheHit('records');
          const remaining = Math.max(1, Math.floor(e.ttl - age));
          return { ...aged(e.answer, Math.floor(age)), reuse: remaining };
        }
        if (age >= e.ttl + o.staleFor) entries.delete(key);
      }
      opts.metrics.cacheMiss();
      let answer: Answer;
      try {
        answer = await next(q);
      } catch (err) {
        const fresh = entries.get(key);
        if (fresh && o.staleFor > 0 && (t - fresh.storedAt) / 1000 < fresh.ttl + o.staleFor) {
          opts.metrics.stale();
          return { ...aged(fresh.answer, 0, o.staleTtl), reuse: 0, stale: true };
        }
        throw err;
      }
      const ttl = cacheTtl(answer, o);
      if (ttl === undefined) return { ...answer, reuse: 0 };
      const served = bounded(answer, ttl, o);
      set(key, { answer: served, storedAt: t, ttl });
      return { ...served, reuse: ttl };
    },
  };
}
