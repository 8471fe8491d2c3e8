/**
 * One upstream endpoint (address:port) and the live state the layers share:
 * in-flight count and latency (read by balancers), the breaker gate and the
 * outlier ejection (read by `available`). Objects outlive policy and endpoint
 * updates, keyed by address:port, so a breaker keeps its state across a swap.
 */
export type GateState = 'closed' | 'open' | 'half-open';

export class Endpoint {
  readonly key: string;
  inflight = 0;
  /** Exponentially weighted moving average of response latency, ms; 0 until measured. */
  ewmaMs = 0;
  private ewmaAt = 0;
  gate: GateState = 'closed';
  /** Set by the breaker when half-open: one probe may pass. */
  probeTaken = false;
  /**
   * End of the outlier ejection (ms, on the detector's clock), 0 when in
   * service. Only the outlier sweep puts it back to 0, so the endpoint stays
   * out until the first sweep after this time.
   */
  ejectedUntil = 0;
  /** Outlier ejection multiplier: raised by each ejection, lowered by each sweep interval in service. */
  ejections = 0;
  consecutive5xx = 0;
  consecutiveGateway = 0;

  constructor(
    readonly address: string,
    readonly port: number,
    public labels: Record<string, string>,
    public weight: number,
    /** Pod identity for /endpoints and logs. */
    public pod: string,
  ) {
    this.key = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  }

  /** Whether a balancer may pick this endpoint now. */
  available(now: number): boolean {
    if (this.ejectedUntil !== 0) return false;
    if (this.gate === 'open') return false;
    if (this.gate === 'half-open') return !this.probeTaken;
    return true;
  }

  /** The outlier sweep, not the clock, ends an ejection. */
  ejected(): boolean { return this.ejectedUntil !== 0; }

  observeLatency(ms: number, decayMs: number, now: number): void {
    if (this.ewmaAt === 0) { this.ewmaMs = ms; this.ewmaAt = now; return; }
    const w = Math.exp(-(now - this.ewmaAt) / decayMs);
    this.ewmaMs = this.ewmaMs * w + ms * (1 - w);
    this.ewmaAt = now;
  }
}

/** Keeps one Endpoint object per address:port across updates. */
export class EndpointRegistry {
  private readonly byKey = new Map<string, Endpoint>();

  get(address: string, port: number, labels: Record<string, string>, pod: string): Endpoint {
    const probe = new Endpoint(address, port, labels, weightOf(labels), pod);
    const known = this.byKey.get(probe.key);
    if (known) {
      known.labels = labels;
      known.weight = probe.weight;
      known.pod = pod;
      return known;
    }
    this.byKey.set(probe.key, probe);
    return probe;
  }

  /** Forgets endpoints not in `live` (keys), returning the removed ones. */
  retain(live: Set<string>): Endpoint[] {
    const gone: Endpoint[] = [];
    for (const [k, ep] of this.byKey) if (!live.has(k)) { gone.push(ep); this.byKey.delete(k); }
    return gone;
  }

  all(): Endpoint[] { return [...this.byKey.values()]; }
}

/** Endpoint weight comes from the `meshwork.io/weight` label (default 1). */
export function weightOf(labels: Record<string, string>): number {
  const w = Number(labels['meshwork.io/weight'] ?? 1);
  return Number.isFinite(w) && w > 0 ? w : 1;
}
