/**
 * Simulated sidecars for the product tests: each "target" is a prom-client
 * registry with the sidecar's request metrics (same names, labels and
 * buckets), so the canary controller and the dashboard parse real exposition
 * text. A fake clock drives time. Nothing here is random.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Clock } from '../../canary/controller';
import { textMetricsSource, type MetricsSource } from '../../canary/source';

const LABELS = ['direction', 'source_workload', 'source_namespace', 'destination_service', 'destination_subset', 'route', 'response_code'] as const;
type CallLabels = Record<(typeof LABELS)[number], string>;

export class FakeSidecar {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'meshwork_requests_total', help: 'requests', labelNames: LABELS, registers: [this.registry] });
  readonly duration = new Histogram({
    name: 'meshwork_request_duration_seconds', help: 'durations', labelNames: LABELS, registers: [this.registry],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  readonly breakers = new Gauge({ name: 'meshwork_circuit_breaker_state', help: 'breaker', labelNames: ['destination_service', 'endpoint'], registers: [this.registry] });
  readonly ejected = new Gauge({ name: 'meshwork_outlier_ejected', help: 'ejected', labelNames: ['destination_service', 'endpoint'], registers: [this.registry] });
  constructor(readonly workload: string, readonly namespace = 'default') {}

  /** Breaker state this sidecar holds for an upstream endpoint: 0 closed, 1 open, 2 half-open. */
  breaker(service: string, endpoint: string, state: 0 | 1 | 2, ejected = false): void {
    this.breakers.set({ destination_service: service, endpoint }, state);
    this.ejected.set({ destination_service: service, endpoint }, ejected ? 1 : 0);
  }

  /** `n` outbound calls to `service` (name.ns) subset `subset`, each taking `seconds`, answered `code`. */
  call(service: string, subset: string, n: number, seconds: number, code = 200, route = 'default'): void {
    if (n <= 0) return;
    const l: CallLabels = {
      direction: 'outbound', source_workload: this.workload, source_namespace: this.namespace,
      destination_service: service, destination_subset: subset, route, response_code: String(code),
    };
    this.requests.inc(l, n);
    for (let i = 0; i < n; i++) this.duration.observe(l, seconds);
  }
}

export class FakeMesh {
  readonly sidecars = new Map<string, FakeSidecar>();
  /** Targets that fail to scrape, as a down sidecar would. */
  readonly down = new Set<string>();
  sidecar(workload: string, namespace = 'default'): FakeSidecar {
    let s = this.sidecars.get(workload);
    if (!s) { s = new FakeSidecar(workload, namespace); this.sidecars.set(workload, s); }
    return s;
  }
  source(now: () => number, beforeScrape?: () => void | Promise<void>): MetricsSource {
    const inner = textMetricsSource(async () => {
      await beforeScrape?.();
      const out: Record<string, string> = {};
      for (const [name, s] of this.sidecars) if (!this.down.has(name)) out[`http://${name}/metrics`] = await s.registry.metrics();
      return out;
    }, now);
    return {
      scrape: async () => {
        const sc = await inner.scrape();
        for (const name of this.down) sc.targets.push({ target: `http://${name}/metrics`, error: 'connect ECONNREFUSED' });
        return sc;
      },
    };
  }
}

/** A clock tests move by hand; timers fire when advanced past. */
export class FakeClock implements Clock {
  private t: number;
  private timers: Array<{ at: number; fn: () => void; id: number }> = [];
  private nextId = 1;
  constructor(start = Date.parse('2026-01-01T00:00:00Z')) { this.t = start; }
  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown): void { this.timers = this.timers.filter((x) => x.id !== h); }
  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.at <= this.t);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.fn();
  }
}
