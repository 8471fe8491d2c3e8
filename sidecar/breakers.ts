/**
 * One opossum circuit breaker per upstream endpoint. The breaker does not sit
 * in front of the balancer: it only opens and shuts the endpoint's gate
 * (`Endpoint.gate`), which every balancer reads through `available()`. A 5xx
 * response counts as a failure for the breaker but still reaches the client
 * (or the retry layer) as the response it is.
 */
import CircuitBreaker from 'opossum';
import type { UpstreamResponse as IncomingMessage } from './context';
import type { CircuitBreaker as BreakerSpec } from '../policies/model';
import type { Endpoint } from './endpoint';
import { BreakerOpenError } from './errors';
import type { SidecarMetrics } from './metrics';

type Thunk = () => Promise<IncomingMessage>;

/** Carries a 5xx response through opossum's failure path. */
class FailedResponse extends Error {
  constructor(readonly res: IncomingMessage) { super(`status ${res.statusCode}`); }
}

interface Entry { breaker: CircuitBreaker<[Thunk], IncomingMessage>; specKey: string; ep: Endpoint; service: string }

export class BreakerSet {
  private readonly entries = new Map<string, Entry>();
  constructor(private readonly metrics?: SidecarMetrics) {}

  /** Runs `attempt` through the endpoint's breaker (created or re-created for `spec`). */
  async run(service: string, ep: Endpoint, spec: BreakerSpec, attempt: Thunk): Promise<IncomingMessage> {
    const e = this.entry(service, ep, spec);
    if (ep.gate === 'half-open') ep.probeTaken = true;
    try {
      return await e.breaker.fire(async () => {
        const res = await attempt();
        if (res.statusCode! >= 500) throw new FailedResponse(res);
        return res;
      });
    } catch (err) {
      if (err instanceof FailedResponse) return err.res;
      if ((err as { code?: string }).code === 'EOPENBREAKER') throw new BreakerOpenError(ep.key);
      throw err;
    }
  }

  private entry(service: string, ep: Endpoint, spec: BreakerSpec): Entry {
    const specKey = `${spec.errorThresholdPercentage}/${spec.volumeThreshold}/${spec.rollingCountTimeoutMs}/${spec.resetTimeoutMs}`;
    const known = this.entries.get(ep.key);
    if (known && known.specKey === specKey && known.ep === ep) return known;
    if (known) known.breaker.shutdown();
    const breaker = new CircuitBreaker<[Thunk], IncomingMessage>((t: Thunk) => t(), {
      timeout: false,
      errorThresholdPercentage: spec.errorThresholdPercentage,
      volumeThreshold: spec.volumeThreshold,
      rollingCountTimeout: spec.rollingCountTimeoutMs,
      rollingCountBuckets: 10,
      resetTimeout: spec.resetTimeoutMs,
      // Unused by the mesh and costly on the hot path: with percentiles on, opossum keeps every
      // latency of the window and sorts them all on each failure and each snapshot (every bucket).
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
    });
    const set = (gate: Endpoint['gate'], code: 0 | 1 | 2) => {
      ep.gate = gate;
      ep.probeTaken = false;
      this.metrics?.breakerState(service, ep.key, code);
    };
    breaker.on('open', () => set('open', 1));
    breaker.on('halfOpen', () => set('half-open', 2));
    breaker.on('close', () => set('closed', 0));
    ep.gate = 'closed';
    this.metrics?.breakerState(service, ep.key, 0);
    const entry = { breaker, specKey, ep, service };
    this.entries.set(ep.key, entry);
    return entry;
  }

  /** Drops breakers of endpoints no longer known. */
  retain(live: Set<string>): void {
    for (const [k, e] of this.entries) if (!live.has(k)) { e.breaker.shutdown(); this.entries.delete(k); }
  }

  stop(): void {
    for (const e of this.entries.values()) e.breaker.shutdown();
    this.entries.clear();
  }
}
