/**
 * Cluster stores the plugin writes endpoint records to, opened on first use
 * and kept for a short idle period: the resident daemon then pays for opening
 * a store (reading the file store's log, connecting to etcd) once per burst
 * of calls instead of once per call. The standalone plugin closes them before
 * it exits. store/open.ts loads a backend only when its spec names it, so a
 * file-store call never loads the etcd client.
 */
import type { Store } from '../store/types';
import { withContext } from '../lib/errors';
import { CniCode, CniError } from './types';

export interface StorePool {
  /** Runs `fn` with the store named by `spec`, opening it if needed. */
  use<T>(spec: string, fn: (store: Store) => Promise<T>): Promise<T>;
  closeAll(): Promise<void>;
}

export interface StorePoolOptions {
  /** Close a store this long after its last use (default 10 s; 0 closes at once). */
  idleMs?: number;
  open?: (spec: string) => Promise<Store>;
}

interface Entry { store: Promise<Store>; users: number; timer?: NodeJS.Timeout }

const defaultOpen = async (spec: string): Promise<Store> => {
  const { openStore } = await import('../store/open');
  // Endpoint records describe pods of this host, which a power loss kills
  // too: losing the last ones in such a crash is harmless, so the file store
  // skips its per-write fdatasync here (its log stays consistent either way).
  return openStore(spec, { file: { durable: false } });
};

export function createStorePool(opts: StorePoolOptions = {}): StorePool {
  const idleMs = opts.idleMs ?? 10_000;
  const open = opts.open ?? defaultOpen;
  const entries = new Map<string, Entry>();

  const close = async (spec: string, e: Entry): Promise<void> => {
    if (entries.get(spec) === e) entries.delete(spec);
    if (e.timer) clearTimeout(e.timer);
    try { await (await e.store).close(); } catch { /* never opened, or already gone */ }
  };

  return {
    async use(spec, fn) {
      let e = entries.get(spec);
      if (!e) {
        e = { store: open(spec), users: 0 };
        entries.set(spec, e);
        // A failed open must not be cached: the next call tries again.
        e.store.catch(() => { if (entries.get(spec) === e) entries.delete(spec); });
      }
      const entry = e;
      entry.users++;
      if (entry.timer) { clearTimeout(entry.timer); entry.timer = undefined; }
      try {
        let store: Store;
        try {
          store = await entry.store;
        } catch (err) {
          if ((err as { code?: string }).code === 'ESTORE_SPEC') throw new CniError(CniCode.invalidConfig, `store: ${(err as Error).message}`);
          throw withContext(`opening the cluster store ${spec}`, err);
        }
        return await fn(store);
      } finally {
        entry.users--;
        if (entry.users === 0 && entries.get(spec) === entry) {
          if (idleMs <= 0) await close(spec, entry);
          else {
            entry.timer = setTimeout(() => { if (entry.users === 0) void close(spec, entry); }, idleMs);
            entry.timer.unref();
          }
        }
      }
    },
    async closeAll() {
      await Promise.all([...entries].map(([spec, e]) => close(spec, e)));
    },
  };
}
