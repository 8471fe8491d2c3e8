/**
 * The sidecar's Prometheus metrics, in the spirit of Istio's standard metrics
 * (requests, durations, TCP connections and bytes) plus the mesh's own
 * (retries, breaker state, ejections, overflow, reloads). One registry per
 * sidecar instance: no global state, so tests build as many as they like.
 * Listed with their labels in sidecar/README.md.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Direction = 'inbound' | 'outbound';

/** Labels of one request stream, resolved once per (route, subset, code). */
export interface RequestLabels {
  direction: Direction;
  destination_service: string;
  destination_subset: string;
  route: string;
  response_code: string;
}

/** One (direction, service, subset, route, code) series of the request counter and histogram. */
export interface RequestSeries {
  record(seconds: number): void;
}

const REQUEST_LABELS = ['direction', 'source_workload', 'source_namespace', 'destination_service', 'destination_subset', 'route', 'response_code'] as const;

export interface SidecarMetrics {
  readonly registry: Registry;
  /** Counts one finished request and its duration. */
  request(l: RequestLabels, seconds: number): void;
  /** The same, for the hot path: the series of one label tuple, resolved once and kept. */
  requestSeries(direction: Direction, service: string, subset: string, route: string, code: number | string): RequestSeries;
  retry(direction: Direction, service: string, reason: string): void;
  overflow(service: string, limit: string): void;
  tcpOpened(direction: Direction, service: string): void;
  tcpClosed(direction: Direction, service: string, sent: number, received: number): void;
  breakerState(service: string, endpoint: string, state: 0 | 1 | 2): void;
  ejection(service: string, endpoint: string, ejected: boolean): void;
  reload(result: 'success' | 'failure'): void;
}

export function createMetrics(source: { workload: string; namespace: string }, opts: { defaultMetrics?: boolean } = {}): SidecarMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry, prefix: 'meshwork_sidecar_' });
    // Gauges prom-client names *_total, which promtool (rightly) rejects.
    for (const n of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(`meshwork_sidecar_${n}`);
  }
  const requests = new Counter({ name: 'meshwork_requests_total', help: 'HTTP requests handled by the sidecar, by outcome.', labelNames: REQUEST_LABELS, registers: [registry] });
  const duration = new Histogram({
    name: 'meshwork_request_duration_seconds', help: 'Time from request received to response headers sent.',
    labelNames: REQUEST_LABELS, registers: [registry],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  const retries = new Counter({ name: 'meshwork_retries_total', help: 'Retried upstream attempts, by the condition that caused them.', labelNames: ['direction', 'destination_service', 'reason'], registers: [registry] });
  const overflow = new Counter({ name: 'meshwork_overflow_total', help: 'Requests rejected fast by a connection-pool or retry-budget limit.', labelNames: ['destination_service', 'limit'], registers: [registry] });
  const tcpOpened = new Counter({ name: 'meshwork_tcp_connections_opened_total', help: 'TCP connections proxied, opened.', labelNames: ['direction', 'source_workload', 'source_namespace', 'destination_service'], registers: [registry] });
  const tcpClosed = new Counter({ name: 'meshwork_tcp_connections_closed_total', help: 'TCP connections proxied, closed.', labelNames: ['direction', 'source_workload', 'source_namespace', 'destination_service'], registers: [registry] });
  const tcpSent = new Counter({ name: 'meshwork_tcp_sent_bytes_total', help: 'Bytes sent to the upstream of proxied TCP connections.', labelNames: ['direction', 'source_workload', 'source_namespace', 'destination_service'], registers: [registry] });
  const tcpReceived = new Counter({ name: 'meshwork_tcp_received_bytes_total', help: 'Bytes received from the upstream of proxied TCP connections.', labelNames: ['direction', 'source_workload', 'source_namespace', 'destination_service'], registers: [registry] });
  const breaker = new Gauge({ name: 'meshwork_circuit_breaker_state', help: 'Circuit breaker of an upstream endpoint: 0 closed, 1 open, 2 half-open.', labelNames: ['destination_service', 'endpoint'], registers: [registry] });
  const ejections = new Counter({ name: 'meshwork_outlier_ejections_total', help: 'Outlier-detection ejections of an upstream endpoint.', labelNames: ['destination_service', 'endpoint'], registers: [registry] });
  const ejected = new Gauge({ name: 'meshwork_outlier_ejected', help: 'Whether an upstream endpoint is ejected now (1) or not (0).', labelNames: ['destination_service', 'endpoint'], registers: [registry] });
  const reloads = new Counter({ name: 'meshwork_config_reloads_total', help: 'Policy and endpoint snapshots applied or refused.', labelNames: ['result'], registers: [registry] });

  const sw = source.workload;
  const sn = source.namespace;
  const series = createSeriesCache(requests, duration, (direction, service, subset, route, code) => ({
    direction, source_workload: sw, source_namespace: sn, destination_service: service, destination_subset: subset, route, response_code: code,
  }));
  return {
    registry,
    request(l, seconds) { series.get(l.direction, l.destination_service, l.destination_subset, l.route, l.response_code).record(seconds); },
    requestSeries: series.get,
    retry(direction, service, reason) { retries.inc({ direction, destination_service: service, reason }); },
    overflow(service, limit) { overflow.inc({ destination_service: service, limit }); },
    tcpOpened(direction, service) { tcpOpened.inc({ direction, source_workload: sw, source_namespace: sn, destination_service: service }); },
    tcpClosed(direction, service, sent, received) {
      const l = { direction, source_workload: sw, source_namespace: sn, destination_service: service };
      tcpClosed.inc(l);
      tcpSent.inc(l, sent);
      tcpReceived.inc(l, received);
    },
    breakerState(service, endpoint, state) { breaker.set({ destination_service: service, endpoint }, state); },
    ejection(service, endpoint, isEjected) {
      if (isEjected) ejections.inc({ destination_service: service, endpoint });
      ejected.set({ destination_service: service, endpoint }, isEjected ? 1 : 0);
    },
    reload(result) { reloads.inc({ result }); },
  };
}

type LabelsOf = (direction: Direction, service: string, subset: string, route: string, code: string) => Record<(typeof REQUEST_LABELS)[number], string>;
type Nested<T> = Map<string, Map<string, Map<string, Map<number | string, T>>>>;

// prom-client's stored values as its 15.x Counter and Histogram keep them (checked in usable()).
interface CounterCell { value: number; labels?: Record<string, unknown> }
interface HistogramCell { sum: number; count: number; bucketValues: Record<number, number>; labels?: Record<string, unknown> }
interface Store<T> { hashMap: Record<string, T> }

/**
 * Request series by label tuple. prom-client re-validates and re-hashes the
 * seven labels on every inc/observe, even through a cached child; at tens of
 * thousands of requests a second that is a few percent of the sidecar's CPU.
 * So each series is registered once through prom-client's API (which creates
 * its stored cell under its own hash) and then updated in place, exactly as
 * prom-client's observe would: counter value; histogram sum, count and the
 * one bucket the value falls in. Lookup by the kept hash each time, so a reset
 * or remove re-registers the series instead of updating a dropped cell. If the
 * installed prom-client keeps its values differently, its public API is used.
 */
function createSeriesCache(requests: Counter<string>, duration: Histogram<string>, labelsOf: LabelsOf): { get: SidecarMetrics['requestSeries'] } {
  const byDirection: Record<Direction, Nested<RequestSeries>> = { inbound: new Map(), outbound: new Map() };
  const direct = usable(requests, duration);
  const bounds = (duration as unknown as { upperBounds: number[] }).upperBounds;
  // Bucket cells are keyed by the bound as a property name: convert each bound once, not per observation.
  const boundKeys = bounds.map(String);
  const make = (labels: Record<string, string>): RequestSeries => {
    if (!direct) {
      const c = requests.labels(labels);
      const h = duration.labels(labels);
      return { record(seconds) { c.inc(); h.observe(seconds); } };
    }
    const cs = (requests as unknown as Store<CounterCell>).hashMap;
    const hs = (duration as unknown as Store<HistogramCell>).hashMap;
    const counterCell = (): CounterCell => {
      requests.inc(labels, 0);
      return (requests as unknown as Store<CounterCell>).hashMap[cKey] ?? cellOf((requests as unknown as Store<CounterCell>).hashMap, labels)!;
    };
    const histogramCell = (): HistogramCell => {
      duration.zero(labels);
      return (duration as unknown as Store<HistogramCell>).hashMap[hKey] ?? cellOf((duration as unknown as Store<HistogramCell>).hashMap, labels)!;
    };
    // An existing cell (made through the public API elsewhere) is adopted, not zeroed.
    let cKey = keyOf(cs, labels) ?? '';
    if (!cKey) { requests.inc(labels, 0); cKey = keyOf((requests as unknown as Store<CounterCell>).hashMap, labels)!; }
    let hKey = keyOf(hs, labels) ?? '';
    if (!hKey) { duration.zero(labels); hKey = keyOf((duration as unknown as Store<HistogramCell>).hashMap, labels)!; }
    return {
      record(seconds) {
        const c = (requests as unknown as Store<CounterCell>).hashMap[cKey] ?? counterCell();
        c.value += 1;
        if (!Number.isFinite(seconds)) return;
        const h = (duration as unknown as Store<HistogramCell>).hashMap[hKey] ?? histogramCell();
        h.sum += seconds;
        h.count += 1;
        for (let i = 0; i < bounds.length; i++) {
          if (seconds <= bounds[i]) { (h.bucketValues as unknown as Record<string, number>)[boundKeys[i]] += 1; break; }
        }
      },
    };
  };
  return {
    get(direction, service, subset, route, code) {
      const d = byDirection[direction];
      let a = d.get(service);
      if (!a) d.set(service, a = new Map());
      let b = a.get(subset);
      if (!b) a.set(subset, b = new Map());
      let c = b.get(route);
      if (!c) b.set(route, c = new Map());
      let s = c.get(code);
      if (!s) c.set(code, s = make(labelsOf(direction, service, subset, route, String(code))));
      return s;
    },
  };
}

function sameLabels(a: Record<string, unknown> | undefined, b: Record<string, string>): boolean {
  if (!a) return false;
  for (const k in b) if (a[k] !== b[k]) return false;
  return Object.keys(a).length === Object.keys(b).length;
}

function keyOf(store: Record<string, { labels?: Record<string, unknown> }>, labels: Record<string, string>): string | undefined {
  for (const k in store) if (sameLabels(store[k].labels, labels)) return k;
  return undefined;
}

function cellOf<T>(store: Record<string, T>, labels: Record<string, string>): T | undefined {
  const k = keyOf(store as Record<string, { labels?: Record<string, unknown> }>, labels);
  return k === undefined ? undefined : store[k];
}

/** Whether prom-client keeps its values the way createSeriesCache updates them (probed on throwaway metrics). */
function usable(c: Counter<string>, h: Histogram<string>): boolean {
  try {
    const pc = new Counter({ name: 'probe_total', help: 'probe', labelNames: ['a'], registers: [] });
    const ph = new Histogram({ name: 'probe_seconds', help: 'probe', labelNames: ['a'], buckets: [1], registers: [] });
    pc.inc({ a: 'x' }, 0);
    ph.zero({ a: 'x' });
    const cs = (pc as unknown as Store<CounterCell>).hashMap;
    const hs = (ph as unknown as Store<HistogramCell>).hashMap;
    const ck = keyOf(cs as never, { a: 'x' });
    const hk = keyOf(hs as never, { a: 'x' });
    if (ck === undefined || hk === undefined) return false;
    const hc = hs[hk];
    if (typeof cs[ck].value !== 'number' || typeof hc.sum !== 'number' || typeof hc.count !== 'number' || hc.bucketValues?.[1] !== 0) return false;
    const b = (h as unknown as { upperBounds?: unknown }).upperBounds;
    return Array.isArray(b) && typeof (c as unknown as Store<CounterCell>).hashMap === 'object';
  } catch {
    return false;
  }
}
