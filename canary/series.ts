/**
 * Arithmetic over two scrapes: counter increases (with reset handling, per
 * target) and histogram quantiles (linear interpolation inside the bucket, as
 * Prometheus' histogram_quantile does). Shared by the canary analysis and the
 * dashboard, so both read the sidecars' request metrics the same way.
 */
import type { Scrape } from './source';
import type { Sample } from './prom';

/** The sidecars' request metrics (Istio-style labels). */
export const REQUESTS_TOTAL = 'meshwork_requests_total';
export const REQUEST_DURATION = 'meshwork_request_duration_seconds';

export type Labels = Record<string, string>;
export type LabelFilter = (labels: Labels) => boolean;

export interface Delta { target: string; labels: Labels; value: number }

export function seriesKey(name: string, labels: Labels): string {
  return name + JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

function indexSamples(samples: Sample[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of samples) m.set(seriesKey(s.name, s.labels), s.value);
  return m;
}

/**
 * Increase of every series of counter `name` passing `filter`, per target,
 * between `prev` and `cur`. A series that appeared since `prev` on a target
 * `prev` already read counts from zero; a target `prev` did not read counts
 * nothing (its history is unknown); a decrease is a restart: count from zero.
 */
export function counterDeltas(prev: Scrape | undefined, cur: Scrape, name: string, filter: LabelFilter = () => true): Delta[] {
  const out: Delta[] = [];
  const prevIndex = new Map<string, Map<string, number>>();
  for (const t of prev?.targets ?? []) if (t.samples) prevIndex.set(t.target, indexSamples(t.samples));
  for (const t of cur.targets) {
    if (!t.samples) continue;
    const before = prevIndex.get(t.target);
    for (const s of t.samples) {
      if (s.name !== name || !filter(s.labels) || !Number.isFinite(s.value)) continue;
      let value = 0;
      if (before) {
        const p = before.get(seriesKey(s.name, s.labels));
        value = p === undefined || s.value < p ? s.value : s.value - p;
      }
      out.push({ target: t.target, labels: s.labels, value });
    }
  }
  return out;
}

export interface Bucket { le: number; count: number }

/** Sums bucket increases of histogram `base` by upper bound, ascending. */
export function histogramDelta(prev: Scrape | undefined, cur: Scrape, base: string, filter: LabelFilter = () => true): Bucket[] {
  const byLe = new Map<number, number>();
  for (const d of counterDeltas(prev, cur, `${base}_bucket`, filter)) {
    const le = d.labels.le === '+Inf' ? Infinity : Number(d.labels.le);
    if (Number.isNaN(le)) continue;
    byLe.set(le, (byLe.get(le) ?? 0) + d.value);
  }
  return [...byLe.entries()].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
}

/**
 * The q-quantile of cumulative buckets, or null without observations. When it
 * falls in the +Inf bucket, the largest finite bound is returned (a lower
 * bound of the truth), as Prometheus does.
 */
export function histogramQuantile(q: number, buckets: Bucket[]): number | null {
  if (buckets.length === 0) return null;
  const total = buckets[buckets.length - 1].le === Infinity ? buckets[buckets.length - 1].count : Math.max(...buckets.map((b) => b.count));
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return lower;
      if (b.count === below) return b.le;
      return lower + (b.le - lower) * ((rank - below) / (b.count - below));
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}

/** True for a response the analysis counts as failed: 5xx, or no response at all (code 0/empty). */
export function isFailure(labels: Labels): boolean {
  const code = Number(labels.response_code ?? '');
  return !(code > 0) || code >= 500;
}

/**
 * A matcher for `destination_service` values naming the service `ref`
 * ("name" or "name.namespace", as TrafficPolicy.spec.service says), in any of
 * the forms a sidecar may report: "name", "name.ns", "name.ns.svc[.zone]".
 */
export function serviceMatcher(ref: string, defaultNamespace: string): (value: string | undefined) => boolean {
  const [name, ns = defaultNamespace] = ref.split('.');
  return (value) => {
    if (!value) return false;
    const parts = value.split('.');
    if (parts[0] !== name) return false;
    if (parts.length === 1) return true;
    return parts[1] === ns;
  };
}

/** Canonical "name.namespace" for a destination_service value. */
export function canonicalService(value: string, defaultNamespace = 'default'): string {
  const [name, ns = defaultNamespace] = value.split('.');
  return `${name}.${ns}`;
}

export interface TrafficStats {
  requests: number;
  failures: number;
  /** Percent of non-failed requests; null without requests. */
  successRatePercent: number | null;
  /** Milliseconds; null without latency observations. */
  p99Ms: number | null;
}

/**
 * Request stats over the window prev..cur of the series passing `filter`.
 * Client-side (outbound) series are preferred: they see connect failures and
 * the split; the server side (inbound) is used when no sidecar calls it.
 */
export function trafficStats(prev: Scrape | undefined, cur: Scrape, filter: LabelFilter): TrafficStats {
  let dir = (l: Labels) => l.direction === 'outbound';
  let reqs = counterDeltas(prev, cur, REQUESTS_TOTAL, (l) => dir(l) && filter(l));
  if (reqs.length === 0) {
    dir = (l: Labels) => l.direction !== 'outbound';
    reqs = counterDeltas(prev, cur, REQUESTS_TOTAL, (l) => dir(l) && filter(l));
  }
  let requests = 0;
  let failures = 0;
  for (const d of reqs) {
    requests += d.value;
    if (isFailure(d.labels)) failures += d.value;
  }
  const p99 = histogramQuantile(0.99, histogramDelta(prev, cur, REQUEST_DURATION, (l) => dir(l) && filter(l)));
  return {
    requests,
    failures,
    successRatePercent: requests > 0 ? (100 * (requests - failures)) / requests : null,
    p99Ms: p99 === null ? null : p99 * 1000,
  };
}
