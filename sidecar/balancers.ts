/**
 * Load balancers. Each only implements `pick` over one subset's endpoints; it
 * never touches sockets and never knows about retries or breakers beyond
 * `available()` and the `exclude` set the retry layer passes (endpoints already
 * tried). A balancer is immutable per endpoint set: the service rebuilds it when
 * the set changes (a ring hash rebuilds its ring then, and only then).
 */
import type { LoadBalancer } from '../policies/model';
import type { Endpoint } from './endpoint';

export interface PickContext {
  now: number;
  /** Endpoints a previous attempt of this request used; avoided when another exists. */
  exclude?: ReadonlySet<Endpoint>;
  /** The ring-hash key of this request (header, cookie or source IP); undefined when absent. */
  hashKey?: string;
}

export interface Balancer {
  readonly endpoints: readonly Endpoint[];
  pick(ctx: PickContext): Endpoint | undefined;
}

export type Random = () => number;

export function createBalancer(spec: LoadBalancer, endpoints: readonly Endpoint[], random: Random = Math.random): Balancer {
  switch (spec.type) {
    case 'round-robin': return new RoundRobin(endpoints);
    case 'random': return new RandomPick(endpoints, random);
    case 'least-request': return new PowerOfChoices(endpoints, random, Math.max(2, spec.choiceCount || 2), (e) => (e.inflight + 1) / e.weight);
    case 'ewma': return new PowerOfChoices(endpoints, random, 2, (e) => (e.ewmaMs + 1) * (e.inflight + 1) / e.weight);
    case 'ring-hash': return new RingHash(endpoints, random, spec.minRingSize || 1024);
  }
}

/** Runs `pickOnce` avoiding excluded endpoints, then (a retry with nowhere else to go) allowing them. */
function withFallback(ctx: PickContext, pickOnce: (usable: (e: Endpoint) => boolean) => Endpoint | undefined): Endpoint | undefined {
  const { now, exclude } = ctx;
  if (exclude && exclude.size > 0) {
    const ep = pickOnce((e) => !exclude.has(e) && e.available(now));
    if (ep) return ep;
  }
  return pickOnce((e) => e.available(now));
}

function uniform(endpoints: readonly Endpoint[]): boolean {
  return endpoints.every((e) => e.weight === endpoints[0].weight);
}

/** Smooth weighted round robin (equal weights: a plain rotating cursor). */
class RoundRobin implements Balancer {
  private cursor = 0;
  private readonly current: number[];
  private readonly plain: boolean;
  constructor(readonly endpoints: readonly Endpoint[]) {
    this.current = endpoints.map(() => 0);
    this.plain = uniform(endpoints);
  }
  pick(ctx: PickContext): Endpoint | undefined {
    const eps = this.endpoints;
    const n = eps.length;
    if (n === 0) return undefined;
    return withFallback(ctx, (usable) => {
      if (this.plain) {
        for (let i = 0; i < n; i++) {
          const ep = eps[this.cursor++ % n];
          if (this.cursor >= n) this.cursor = 0;
          if (usable(ep)) return ep;
        }
        return undefined;
      }
      let best = -1;
      let total = 0;
      for (let i = 0; i < n; i++) {
        if (!usable(eps[i])) continue;
        this.current[i] += eps[i].weight;
        total += eps[i].weight;
        if (best < 0 || this.current[i] > this.current[best]) best = i;
      }
      if (best < 0) return undefined;
      this.current[best] -= total;
      return eps[best];
    });
  }
}

class RandomPick implements Balancer {
  constructor(readonly endpoints: readonly Endpoint[], private readonly random: Random) {}
  pick(ctx: PickContext): Endpoint | undefined {
    return withFallback(ctx, (usable) => {
      let total = 0;
      for (const e of this.endpoints) if (usable(e)) total += e.weight;
      if (total === 0) return undefined;
      let r = this.random() * total;
      for (const e of this.endpoints) {
        if (!usable(e)) continue;
        r -= e.weight;
        if (r < 0) return e;
      }
      return this.endpoints.findLast(usable);
    });
  }
}

/**
 * Power of N choices: sample N usable endpoints at random, keep the cheapest.
 * Least request costs in-flight/weight; EWMA costs latency × in-flight.
 */
class PowerOfChoices implements Balancer {
  constructor(readonly endpoints: readonly Endpoint[], private readonly random: Random, private readonly choices: number,
    private readonly cost: (e: Endpoint) => number) {}
  pick(ctx: PickContext): Endpoint | undefined {
    const eps = this.endpoints;
    const n = eps.length;
    if (n === 0) return undefined;
    return withFallback(ctx, (usable) => {
      let best: Endpoint | undefined;
      let bestCost = Infinity;
      let found = 0;
      // Random probes first (the second distinct from the first, as P2C intends);
      // a few misses (many unusable) fall back to a scan.
      let first = -1;
      for (let tries = 0; tries < this.choices * 3 && found < this.choices; tries++) {
        const i = first >= 0 && n > 1 && found === 1 ? (first + 1 + Math.floor(this.random() * (n - 1))) % n : Math.floor(this.random() * n);
        if (first < 0) first = i;
        const ep = eps[i];
        if (!usable(ep)) continue;
        found++;
        const c = this.cost(ep);
        if (c < bestCost) { best = ep; bestCost = c; }
      }
      if (best) return best;
      for (const ep of eps) {
        if (!usable(ep)) continue;
        const c = this.cost(ep);
        if (c < bestCost) { best = ep; bestCost = c; }
      }
      return best;
    });
  }
}

/**
 * Consistent hashing on a ring of virtual nodes (count proportional to weight).
 * A key maps to the first usable endpoint clockwise, so removing one endpoint
 * moves only the keys it owned.
 */
class RingHash implements Balancer {
  private readonly points: Uint32Array;
  private readonly owners: Endpoint[];
  private readonly fallback: RandomPick;
  constructor(readonly endpoints: readonly Endpoint[], random: Random, minRingSize: number) {
    this.fallback = new RandomPick(endpoints, random);
    // Points per endpoint depend only on its own weight, never on the others:
    // adding or removing an endpoint then moves only the keys it gains or owned.
    // minRingSize/4 per unit of weight reaches minRingSize from four endpoints on.
    const perWeight = Math.max(16, Math.ceil(minRingSize / 4));
    const entries: Array<[number, Endpoint]> = [];
    for (const ep of endpoints) {
      const vnodes = Math.max(1, Math.round(perWeight * ep.weight));
      for (let i = 0; i < vnodes; i++) entries.push([hash32(`${ep.key}#${i}`), ep]);
    }
    entries.sort((a, b) => a[0] - b[0]);
    this.points = Uint32Array.from(entries.map((e) => e[0]));
    this.owners = entries.map((e) => e[1]);
  }
  pick(ctx: PickContext): Endpoint | undefined {
    if (ctx.hashKey === undefined || this.points.length === 0) return this.fallback.pick(ctx);
    const h = hash32(ctx.hashKey);
    const pts = this.points;
    let lo = 0;
    let hi = pts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pts[mid] < h) lo = mid + 1; else hi = mid;
    }
    return withFallback(ctx, (usable) => {
      for (let i = 0; i < pts.length; i++) {
        const ep = this.owners[(lo + i) % pts.length];
        if (usable(ep)) return ep;
      }
      return undefined;
    });
  }
}

/** FNV-1a over UTF-16 code units, finished with murmur3's avalanche so nearby keys spread. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
