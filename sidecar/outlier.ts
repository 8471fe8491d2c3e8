/**
 * Outlier detection: an endpoint answering `consecutive5xxErrors` 5xx (or
 * `consecutiveGatewayErrors` 502/503/504 or connect failures) in a row is
 * ejected for baseEjectionTime × (times ejected), never leaving more than
 * maxEjectionPercent of the service's endpoints ejected. Ejection ends lazily:
 * `Endpoint.available()` compares the deadline with the clock.
 */
import type { OutlierDetection } from '../policies/model';
import type { Upstream } from './catalog';
import type { Endpoint } from './endpoint';
import type { SidecarMetrics } from './metrics';

export class OutlierDetector {
  private readonly timers = new Set<NodeJS.Timeout>();
  constructor(private readonly now: () => number, private readonly metrics?: SidecarMetrics) {}

  record(up: Upstream, ep: Endpoint, spec: OutlierDetection, status: number): void {
    const gateway = status === 502 || status === 503 || status === 504;
    ep.consecutive5xx = status >= 500 ? ep.consecutive5xx + 1 : 0;
    ep.consecutiveGateway = gateway ? ep.consecutiveGateway + 1 : 0;
    const trip = (spec.consecutive5xxErrors !== undefined && ep.consecutive5xx >= spec.consecutive5xxErrors)
      || (spec.consecutiveGatewayErrors !== undefined && ep.consecutiveGateway >= spec.consecutiveGatewayErrors);
    if (!trip) return;
    const now = this.now();
    if (ep.ejected(now)) return;
    const ejectedNow = up.endpoints.filter((e) => e.ejected(now)).length;
    if (((ejectedNow + 1) / up.endpoints.length) * 100 > spec.maxEjectionPercent) return;
    ep.ejections++;
    const ms = spec.baseEjectionTimeMs * ep.ejections;
    ep.ejectedUntil = now + ms;
    ep.consecutive5xx = 0;
    ep.consecutiveGateway = 0;
    this.metrics?.ejection(up.name, ep.key, true);
    if (this.metrics) {
      const t = setTimeout(() => { this.timers.delete(t); this.metrics!.ejection(up.name, ep.key, false); }, ms);
      t.unref();
      this.timers.add(t);
    }
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
