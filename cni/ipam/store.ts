/**
 * The reservation store: one small document per network, changed only inside
 * `update`, which gives the caller exclusive access (across processes for the
 * file store) and persists the new document atomically. Allocation logic lives
 * elsewhere and never sees locks or files.
 */

/** The addresses one attachment (container ID + interface) holds. */
export interface Allocation {
  containerID: string;
  ifname: string;
  /** Canonical addresses without prefix, one per range set, in range-set order. */
  ips: string[];
}

export interface IpamState {
  allocations: Allocation[];
  /** Last address handed out, per range set key: the search resumes after it. */
  lastReserved: Record<string, string>;
}

export const emptyState = (): IpamState => ({ allocations: [], lastReserved: {} });

/** What an update function returns: the new state (omit to leave it unchanged) and a value. */
export interface UpdateOutcome<T> { state?: IpamState; value: T }

export interface ReservationStore {
  /** Runs `fn` with exclusive access to `network`'s state; persists `state` if returned. */
  update<T>(network: string, fn: (state: IpamState) => UpdateOutcome<T>): Promise<T>;
  /** A snapshot, for CHECK and tests. */
  read(network: string): Promise<IpamState>;
}

/** Serialises async critical sections per key inside one process. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

const clone = (s: IpamState): IpamState => JSON.parse(JSON.stringify(s)) as IpamState;

/** In-memory store for unit tests and embedders that keep state elsewhere. */
export function createMemoryStore(): ReservationStore {
  const docs = new Map<string, IpamState>();
  const mutex = new KeyedMutex();
  return {
    update: (network, fn) => mutex.run(network, async () => {
      const out = fn(clone(docs.get(network) ?? emptyState()));
      if (out.state) docs.set(network, clone(out.state));
      return out.value;
    }),
    read: async (network) => clone(docs.get(network) ?? emptyState()),
  };
}

/** Validates a stored document; anything else is reported, never guessed at. */
export function decodeState(text: string): IpamState | undefined {
  let v: unknown;
  try { v = JSON.parse(text); } catch { return undefined; }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (!Array.isArray(o.allocations) || typeof o.lastReserved !== 'object' || o.lastReserved === null) return undefined;
  for (const a of o.allocations as unknown[]) {
    const x = a as Record<string, unknown>;
    if (typeof x?.containerID !== 'string' || typeof x.ifname !== 'string' || !Array.isArray(x.ips) || x.ips.some((i) => typeof i !== 'string')) return undefined;
  }
  return { allocations: o.allocations as Allocation[], lastReserved: o.lastReserved as Record<string, string> };
}
