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

const REQUEST_LABELS = ['direction', 'source_workload', 'source_namespace', 'destination_service', 'destination_subset', 'route', 'response_code'] as const;

export interface SidecarMetrics {
  readonly registry: Registry;
  /** Counts one finished request and its duration. */
  request(l: RequestLabels, seconds: number): void;
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

  // Children cached by label tuple: the hot path then does one Map lookup, not prom-client's label hashing.
  const children = new Map<string, { c: Counter.Internal; h: Histogram.Internal<string> }>();
  const sw = source.workload;
  const sn = source.namespace;
  return {
    registry,
    request(l, seconds) {
      const k = `${l.direction}\0${l.destination_service}\0${l.destination_subset}\0${l.route}\0${l.response_code}`;
      let ch = children.get(k);
      if (!ch) {
        const labels = { direction: l.direction, source_workload: sw, source_namespace: sn, destination_service: l.destination_service, destination_subset: l.destination_subset, route: l.route, response_code: l.response_code };
        ch = { c: requests.labels(labels), h: duration.labels(labels) };
        children.set(k, ch);
      }
      ch.c.inc();
      ch.h.observe(seconds);
    },
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
