/**
 * What the live view and the story read: the client-side (outbound) request
 * metrics of the sidecars that call services, and the frontend sidecar's
 * breaker and ejection states, all fetched through the hub's unix socket.
 * The arithmetic is the canary analysis' own (canary/series.ts).
 */
import * as http from 'node:http';
import { parsePrometheusText } from '../canary/prom';
import type { Scrape } from '../canary/source';
import { counterDeltas, REQUESTS_TOTAL, isFailure, histogramDelta, histogramQuantile, REQUEST_DURATION } from '../canary/series';

export interface HubResponse { status: number; body: string }

/** One HTTP request to the hub over its unix socket. */
export function hubRequest(socketPath: string, pathAndQuery: string, method = 'GET', timeoutMs = 4000): Promise<HubResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: pathAndQuery, method, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`hub ${pathAndQuery}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

export const relayPath = (url: string) => `/relay?url=${encodeURIComponent(url)}`;

export interface Row {
  service: string;
  subset: string;
  rps: number;
  successPercent: number | null;
  p99Ms: number | null;
}

export interface EndpointState { service: string; address: string; pod?: string; subsets: string[]; breaker: string; ejected: boolean }

export interface Observation {
  at: number;
  rows: Row[];
  endpoints: EndpointState[];
  /** Targets that could not be read this time. */
  errors: string[];
}

/** "reviews.default" → "reviews": the demo's app lives in one namespace. */
const short = (s: string) => s.split('.')[0];

/** Per service and subset: rate, success and p99 between two scrapes of the calling sidecars. */
export function rowsBetween(prev: Scrape, cur: Scrape): Row[] {
  const seconds = Math.max(0.001, (cur.at - prev.at) / 1000);
  const outbound = (l: Record<string, string>) => l.direction === 'outbound' && l.destination_service !== 'unknown';
  const groups = new Map<string, { service: string; subset: string; n: number; fail: number }>();
  for (const d of counterDeltas(prev, cur, REQUESTS_TOTAL, outbound)) {
    const service = short(d.labels.destination_service ?? '?');
    const subset = d.labels.destination_subset || 'all';
    const k = `${service}\0${subset}`;
    const g = groups.get(k) ?? { service, subset, n: 0, fail: 0 };
    g.n += d.value;
    if (isFailure(d.labels)) g.fail += d.value;
    groups.set(k, g);
  }
  const rows: Row[] = [];
  for (const g of groups.values()) {
    const match = (l: Record<string, string>) => outbound(l) && short(l.destination_service ?? '?') === g.service && (l.destination_subset || 'all') === g.subset;
    const p99 = histogramQuantile(0.99, histogramDelta(prev, cur, REQUEST_DURATION, match));
    rows.push({
      service: g.service, subset: g.subset, rps: g.n / seconds,
      successPercent: g.n > 0 ? (100 * (g.n - g.fail)) / g.n : null,
      p99Ms: p99 === null ? null : p99 * 1000,
    });
  }
  return rows.sort((a, b) => a.service.localeCompare(b.service) || a.subset.localeCompare(b.subset));
}

export interface ObserverDeps {
  socket: string;
  /** /metrics URLs of the sidecars whose outbound traffic is shown (callers of services). */
  metricsUrls: string[];
  /** /endpoints URLs of sidecars whose breaker view is shown. */
  endpointsUrls: string[];
  now?: () => number;
}

export interface Observer { observe(): Promise<Observation | undefined> }

export function createObserver(deps: ObserverDeps): Observer {
  const now = deps.now ?? Date.now;
  let prev: Scrape | undefined;
  return {
    async observe() {
      const errors: string[] = [];
      const at = now();
      const targets = await Promise.all(deps.metricsUrls.map(async (url) => {
        try {
          const r = await hubRequest(deps.socket, relayPath(url));
          if (r.status !== 200) throw new Error(r.body.trim() || `HTTP ${r.status}`);
          // Only the request series: the rest (process metrics) is not shown and may not parse.
          const text = r.body.split('\n').filter((l) => /^(# (TYPE|HELP) )?meshwork_request/.test(l)).join('\n');
          return { target: url, samples: parsePrometheusText(text, url) };
        } catch (err: any) {
          errors.push(`${url}: ${err?.message ?? err}`);
          return { target: url, error: String(err?.message ?? err) };
        }
      }));
      const endpoints: EndpointState[] = [];
      for (const url of deps.endpointsUrls) {
        try {
          const r = await hubRequest(deps.socket, relayPath(url));
          if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
          for (const u of JSON.parse(r.body) as Array<{ service: string; endpoints: Array<{ address: string; pod?: string; subsets?: string[]; breaker: string; ejected: boolean }> }>) {
            for (const e of u.endpoints) endpoints.push({ service: short(u.service), address: e.address, pod: e.pod, subsets: e.subsets ?? [], breaker: e.breaker, ejected: e.ejected });
          }
        } catch (err: any) {
          errors.push(`${url}: ${err?.message ?? err}`);
        }
      }
      const cur: Scrape = { at, targets };
      const before = prev;
      prev = cur;
      if (!before) return undefined;
      return { at, rows: rowsBetween(before, cur), endpoints, errors };
    },
  };
}
