/**
 * Outlier detection, with Envoy's meaning of its fields: an endpoint answering
 * `consecutive5xxErrors` 5xx (or `consecutiveGatewayErrors` 502/503/504 or
 * connect failures) in a row is ejected at once, for baseEjectionTime × its
 * multiplier (times ejected), never leaving more than maxEjectionPercent of the
 * service's endpoints ejected. Every `intervalMs` a sweep of the service
 * returns the endpoints whose ejection time has passed and takes one off the
 * multiplier of each endpoint that stayed in service for the whole interval.
 * Only the sweep ends an ejection, so balancers read a field and no clock.
 */
import type { OutlierDetection } from '../policies/model';
import type { Upstream } from './catalog';
import type { Endpoint } from './endpoint';
import type { SidecarMetrics } from './metrics';

/** Runs `fn` every `ms` until the returned function is called. Injected so tests sweep on a fake clock. */
export type Every = (ms: number, fn: () => void) => () => void;

/** Real timers, unref'd: a pending sweep never keeps the process alive. */
export const intervalTimer: Every = (ms, fn) => {
  const t = setInterval(fn, ms);
  t.unref();
  return () => clearInterval(t);
};

/** One service's sweep and the endpoints it still has to look at. */
interface Sweep {
  readonly service: string;
  intervalMs: number;
  cancel: () => void;
  /** Endpoints ejected, or in service with a multiplier above 0. */
  readonly eps: Set<Endpoint>;
}

export class OutlierDetector {
  /** By service name: the policy (so the interval) is per service, shared by its ports. */
  private readonly sweeps = new Map<string, Sweep>();
  /** An endpoint shared by two services is watched by one sweep, so its multiplier decays once per interval. */
  private readonly owner = new Map<Endpoint, Sweep>();

  constructor(
    private readonly now: () => number,
    private readonly metrics?: SidecarMetrics,
    private readonly every: Every = intervalTimer,
  ) {}

  /** Called for every response of the proxy: O(1) and allocation-free unless the endpoint trips. */
  record(up: Upstream, ep: Endpoint, spec: OutlierDetection, status: number): void {
    const gateway = status === 502 || status === 503 || status === 504;
    ep.consecutive5xx = status >= 500 ? ep.consecutive5xx + 1 : 0;
    ep.consecutiveGateway = gateway ? ep.consecutiveGateway + 1 : 0;
    const trip = (spec.consecutive5xxErrors !== undefined && ep.consecutive5xx >= spec.consecutive5xxErrors)
      || (spec.consecutiveGatewayErrors !== undefined && ep.consecutiveGateway >= spec.consecutiveGatewayErrors);
    if (!trip) return;
    if (ep.ejected()) return;
    const ejectedNow = up.endpoints.filter((e) => e.ejected()).length;
    if (((ejectedNow + 1) / up.endpoints.length) * 100 > spec.maxEjectionPercent) return;
    ep.ejections++;
    ep.ejectedUntil = this.now() + spec.baseEjectionTimeMs * ep.ejections;
    ep.consecutive5xx = 0;
    ep.consecutiveGateway = 0;
    this.metrics?.ejection(up.name, ep.key, true);
    this.watch(up.name, ep, spec.intervalMs);
  }

  /** Stops every sweep; endpoints it was holding out return, since nothing else would end their ejection. */
  stop(): void {
    for (const s of this.sweeps.values()) {
      s.cancel();
      for (const ep of s.eps) {
        if (ep.ejected()) this.release(s, ep);
        ep.ejections = 0;
      }
    }
    this.sweeps.clear();
    this.owner.clear();
  }

  private watch(service: string, ep: Endpoint, intervalMs: number): void {
    let s = this.sweeps.get(service);
    if (!s) {
      const created: Sweep = { service, intervalMs, cancel: () => {}, eps: new Set() };
      created.cancel = this.every(intervalMs, () => this.sweep(created));
      this.sweeps.set(service, created);
      s = created;
    } else if (s.intervalMs !== intervalMs) {
      // The policy changed its interval: sweep at the new pace from now on.
      const same = s;
      s.cancel();
      s.intervalMs = intervalMs;
      s.cancel = this.every(intervalMs, () => this.sweep(same));
    }
    const prev = this.owner.get(ep);
    if (prev && prev !== s) {
      prev.eps.delete(ep);
      this.endIfIdle(prev);
    }
    s.eps.add(ep);
    this.owner.set(ep, s);
  }

  private sweep(s: Sweep): void {
    const now = this.now();
    for (const ep of s.eps) {
      if (ep.ejected()) {
        // Out for (part of) this interval, so no decay yet.
        if (ep.ejectedUntil <= now) this.release(s, ep);
        continue;
      }
      // Only a sweep ends an ejection, so an endpoint in service now was in service for the whole interval.
      if (ep.ejections > 0) ep.ejections--;
      if (ep.ejections === 0) {
        s.eps.delete(ep);
        this.owner.delete(ep);
      }
    }
    this.endIfIdle(s);
  }

  private release(s: Sweep, ep: Endpoint): void {
    ep.ejectedUntil = 0;
    this.metrics?.ejection(s.service, ep.key, false);
  }

  private endIfIdle(s: Sweep): void {
    if (s.eps.size > 0) return;
    s.cancel();
    if (this.sweeps.get(s.service) === s) this.sweeps.delete(s.service);
  }
}
