/**
 * In-memory Store for unit tests of other areas: the same semantics as the
 * file and etcd backends (revisions, CAS, txn, leases with TTL, watch with a
 * bounded history so `fromRevision` works), inside one process.
 * `abandonLease(id)` stops a lease's renewal, as if its holder died, so tests
 * can watch it expire after its TTL.
 */
import type { Lease, ListResult, KeyValue, Store, TxnCompare, TxnOp, Watch, WatchEvent, WatchOptions } from './types';
import * as engine from './engine';
import { LeaseLostError, StoreArgumentError, StoreClosedError, StoreCompactedError } from './errors';
import { WatcherSet } from './watchers';

export interface MemoryStoreOptions {
  /** Changes kept for resuming watches (default 10000). */
  historyLimit?: number;
  /** Clock, for tests that want to drive lease expiry themselves. */
  now?: () => number;
}

export interface MemoryStore extends Store {
  /** Stops renewing a lease as if its holder died; it expires after its TTL. */
  abandonLease(id: string): void;
  /** Checks for expired leases now (normally driven by a timer). */
  sweep(): void;
  /** Current store revision. */
  revision(): number;
}

export function createMemoryStore(opts: MemoryStoreOptions = {}): MemoryStore {
  const limit = opts.historyLimit ?? 10_000;
  const now = opts.now ?? Date.now;
  const st = engine.emptyState();
  const watchers = new WatcherSet();
  const renewers = new Map<string, NodeJS.Timeout>();
  const lostHandlers = new Map<string, Array<(err: Error) => void>>();
  let sweepTimer: NodeJS.Timeout | undefined;
  let nextLeaseId = 1;
  let closed = false;

  function open(where: string): void {
    if (closed) throw new StoreClosedError(`memory store ${where}`);
  }

  function commit(events: WatchEvent[]): void {
    engine.recordHistory(st, events, limit);
    watchers.offer(events);
  }

  function write(compares: TxnCompare[], ops: TxnOp[]): boolean {
    sweep();
    const r = engine.applyTxn(st, compares, ops, now());
    commit(r.events);
    return r.applied;
  }

  function sweep(): void {
    const dead = engine.expiredLeases(st, now());
    // Renewed leases moved their expiry: re-arm the timer even when nothing died.
    if (dead.length === 0) { scheduleSweep(); return; }
    for (const id of dead) stopRenewing(id);
    commit(engine.dropLeases(st, dead));
    for (const id of dead) {
      const handlers = lostHandlers.get(id) ?? [];
      lostHandlers.delete(id);
      for (const cb of handlers) queueMicrotask(() => cb(new LeaseLostError(id, 'expired before it was renewed')));
    }
    scheduleSweep();
  }

  function scheduleSweep(): void {
    if (sweepTimer) clearTimeout(sweepTimer);
    sweepTimer = undefined;
    const at = engine.nextExpiry(st);
    if (at === undefined || closed) return;
    sweepTimer = setTimeout(sweep, Math.max(0, at - now()) + 5);
    sweepTimer.unref();
  }

  function stopRenewing(id: string): void {
    const t = renewers.get(id);
    if (t) clearInterval(t);
    renewers.delete(id);
  }

  const store: MemoryStore = {
    async get(key: string): Promise<KeyValue | undefined> {
      open('get');
      engine.checkKey(key, 'get');
      sweep();
      return engine.getKv(st, key);
    },

    async list(prefix: string): Promise<ListResult> {
      open('list');
      if (typeof prefix !== 'string') throw new StoreArgumentError('list: prefix must be a string');
      sweep();
      return engine.listPrefix(st, prefix);
    },

    async put(key, value, o) {
      open('put');
      engine.checkKey(key, 'put');
      engine.checkValue(value, `put ${key}`);
      const ops: TxnOp[] = [{ op: 'put', key, value, lease: o?.lease }];
      engine.checkTxn([], ops);
      write([], ops);
      return st.revision;
    },

    async cas(key, expected, value, o) {
      open('cas');
      const { compares, ops } = engine.casTxn(key, expected, value, o?.lease);
      return write(compares, ops);
    },

    async txn(compares, ops) {
      open('txn');
      engine.checkTxn(compares, ops);
      return write(compares, ops);
    },

    async delete(key) {
      open('delete');
      engine.checkKey(key, 'delete');
      sweep();
      const existed = st.kvs.has(key);
      write([], [{ op: 'delete', key }]);
      return existed;
    },

    async grantLease(ttlSeconds: number): Promise<Lease> {
      open('grantLease');
      engine.checkTtl(ttlSeconds);
      const id = `mem-${nextLeaseId++}`;
      engine.grantLease(st, id, ttlSeconds, now());
      const renew = setInterval(() => { engine.renewLease(st, id, now()); }, Math.max(100, (ttlSeconds * 1000) / 3));
      renew.unref();
      renewers.set(id, renew);
      scheduleSweep();
      return {
        id,
        ttlSeconds,
        async keepAlive() {
          open('keepAlive');
          sweep();
          if (!engine.renewLease(st, id, now())) throw new LeaseLostError(id, 'expired or revoked');
          scheduleSweep();
        },
        async revoke() {
          open('revoke');
          stopRenewing(id);
          lostHandlers.delete(id);
          commit(engine.dropLeases(st, [id]));
          scheduleSweep();
        },
        onLost(cb) {
          const list = lostHandlers.get(id) ?? [];
          list.push(cb);
          lostHandlers.set(id, list);
        },
      };
    },

    async watch(prefix: string, onEvent: (ev: WatchEvent) => void, o: WatchOptions = {}): Promise<Watch> {
      open('watch');
      if (typeof prefix !== 'string') throw new StoreArgumentError('watch: prefix must be a string');
      const from = o.fromRevision ?? st.revision + 1;
      if (!Number.isInteger(from) || from < 1) throw new StoreArgumentError(`watch ${prefix}: fromRevision must be an integer >= 1, got ${String(o.fromRevision)}`);
      const past = engine.historyFrom(st, from);
      if (!past) {
        const err = new StoreCompactedError(from, st.compacted, `memory store watch ${prefix}`);
        if (!o.onError) throw err;
        const w = watchers.add(prefix, from, onEvent, o.onError);
        watchers.fail(w, err);
        return w;
      }
      const w = watchers.add(prefix, from, onEvent, o.onError);
      watchers.offerTo(w, past);
      return w;
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const id of [...renewers.keys()]) stopRenewing(id);
      if (sweepTimer) clearTimeout(sweepTimer);
      watchers.closeAll();
    },

    abandonLease(id: string) { stopRenewing(id); },
    sweep() { sweep(); },
    revision() { return st.revision; },
  };
  return store;
}
