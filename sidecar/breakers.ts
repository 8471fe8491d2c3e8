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

interface Entry {
  breaker: CircuitBreaker<[Thunk], IncomingMessage>;
  /** The spec object the breaker was built for: the same object means no rebuild, without comparing fields. */
  spec: BreakerSpec;
  specKey: string;
  ep: Endpoint;
  service: string;
  /** Maps what the breaker rejects with to what the stack expects (built once per entry, not per request). */
  settle: (err: unknown) => IncomingMessage;
}

/** The breaker's action: a 5xx response goes down opossum's failure path. */
const guarded = (attempt: Thunk): Promise<IncomingMessage> => attempt().then(failOn5xx);
const failOn5xx = (res: IncomingMessage): IncomingMessage | Promise<never> => (res.statusCode! >= 500 ? Promise.reject(new FailedResponse(res)) : res);

export class BreakerSet {
  private readonly entries = new Map<string, Entry>();
  constructor(private readonly metrics?: SidecarMetrics) {}

  /** Runs `attempt` through the endpoint's breaker (created or re-created for `spec`). */
  run(service: string, ep: Endpoint, spec: BreakerSpec, attempt: Thunk): Promise<IncomingMessage> {
    const e = this.entry(service, ep, spec);
    if (ep.gate === 'half-open') ep.probeTaken = true;
    return e.breaker.fire(attempt).then(undefined, e.settle);
  }

  private entry(service: string, ep: Endpoint, spec: BreakerSpec): Entry {
    const known = this.entries.get(ep.key);
    if (known && known.spec === spec && known.ep === ep) return known;
    const specKey = `${spec.errorThresholdPercentage}/${spec.volumeThreshold}/${spec.rollingCountTimeoutMs}/${spec.resetTimeoutMs}`;
    // A reloaded policy with the same numbers keeps the breaker (and its state).
    if (known && known.specKey === specKey && known.ep === ep) { known.spec = spec; return known; }
    if (known) known.breaker.shutdown();
    const breaker = new CircuitBreaker<[Thunk], IncomingMessage>(guarded, {
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
    const settle = (err: unknown): IncomingMessage => {
      if (err instanceof FailedResponse) return err.res;
      if ((err as { code?: string }).code === 'EOPENBREAKER') throw new BreakerOpenError(ep.key);
      throw err;
    };
    const entry: Entry = { breaker, spec, specKey, ep, service, settle };
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
