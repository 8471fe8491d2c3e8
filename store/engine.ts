/**
 * The state machine shared by the in-memory and the file store: keys with
 * create/mod revisions, leases with an absolute expiry, one store-wide
 * revision, and a bounded history of changes for resumable watches. Pure:
 * callers own locking, persistence, timers and delivery.
 */
import type { KeyValue, ListResult, TxnCompare, TxnOp, WatchEvent } from './types';
import { LeaseNotFoundError, StoreArgumentError } from './errors';

export interface StoredKv { value: string; mod: number; create: number; lease?: string }
export interface LeaseState { ttl: number; expiresAt: number }

export interface EngineState {
  /** Revision of the last write; a fresh store is at 1, as etcd. */
  revision: number;
  /** History is complete only for revisions above this one. */
  compacted: number;
  kvs: Map<string, StoredKv>;
  leases: Map<string, LeaseState>;
  /** Changes in revision order, all with revision > compacted. */
  history: WatchEvent[];
}

export function emptyState(): EngineState {
  return { revision: 1, compacted: 0, kvs: new Map(), leases: new Map(), history: [] };
}

export function checkKey(key: unknown, where: string): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw new StoreArgumentError(`${where}: key must be a non-empty string, got ${JSON.stringify(key)}`);
}

export function checkValue(value: unknown, where: string): asserts value is string {
  if (typeof value !== 'string') throw new StoreArgumentError(`${where}: value must be a string (JSON text), got ${typeof value}`);
}

export function checkTtl(ttl: unknown): asserts ttl is number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1) throw new StoreArgumentError(`grantLease: ttlSeconds must be an integer >= 1, got ${String(ttl)}`);
}

/** Validates a transaction once, at the edge; duplicate keys are refused as etcd does. */
export function checkTxn(compares: TxnCompare[], ops: TxnOp[]): void {
  if (!Array.isArray(compares) || !Array.isArray(ops)) throw new StoreArgumentError('txn: compares and ops must be arrays');
  for (const [i, c] of compares.entries()) {
    checkKey(c?.key, `txn compare ${i}`);
    if (!Number.isInteger(c.modRevision) || c.modRevision < 0) throw new StoreArgumentError(`txn compare ${i} (${c.key}): modRevision must be an integer >= 0`);
  }
  const seen = new Set<string>();
  for (const [i, o] of ops.entries()) {
    checkKey(o?.key, `txn op ${i}`);
    if (o.op === 'put') checkValue(o.value, `txn op ${i} (${o.key})`);
    else if (o.op !== 'delete') throw new StoreArgumentError(`txn op ${i} (${(o as TxnOp).key}): op must be "put" or "delete"`);
    if (o.op === 'put' && o.lease !== undefined && (typeof o.lease !== 'string' || o.lease === '')) throw new StoreArgumentError(`txn op ${i} (${o.key}): lease must be a lease id string`);
    if (seen.has(o.key)) throw new StoreArgumentError(`txn op ${i}: key ${o.key} appears twice in one transaction`);
    seen.add(o.key);
  }
}

/** A compare-and-set as the one-key transaction every backend runs, checked. */
export function casTxn(key: string, expected: number, value: string | null, lease?: string): { compares: TxnCompare[]; ops: TxnOp[] } {
  checkKey(key, 'cas');
  if (value !== null) checkValue(value, `cas ${key}`);
  const ops: TxnOp[] = value === null ? [{ op: 'delete', key }] : [{ op: 'put', key, value, lease }];
  const compares = [{ key, modRevision: expected }];
  checkTxn(compares, ops);
  return { compares, ops };
}

export function toKeyValue(key: string, s: StoredKv): KeyValue {
  const kv: KeyValue = { key, value: s.value, modRevision: s.mod, createRevision: s.create };
  if (s.lease) kv.lease = s.lease;
  return kv;
}

export function getKv(st: EngineState, key: string): KeyValue | undefined {
  const s = st.kvs.get(key);
  return s ? toKeyValue(key, s) : undefined;
}

export function listPrefix(st: EngineState, prefix: string): ListResult {
  const items: KeyValue[] = [];
  for (const [k, s] of st.kvs) if (k.startsWith(prefix)) items.push(toKeyValue(k, s));
  items.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { items, revision: st.revision };
}

/**
 * Applies a transaction if every compare holds. All its changes share one
 * new revision; a transaction that changes nothing leaves the revision alone.
 */
export function applyTxn(st: EngineState, compares: TxnCompare[], ops: TxnOp[], now: number): { applied: boolean; events: WatchEvent[] } {
  for (const c of compares) {
    const cur = st.kvs.get(c.key);
    if ((cur ? cur.mod : 0) !== c.modRevision) return { applied: false, events: [] };
  }
  for (const o of ops) {
    if (o.op === 'put' && o.lease !== undefined) {
      const l = st.leases.get(o.lease);
      if (!l || l.expiresAt <= now) throw new LeaseNotFoundError(o.lease);
    }
  }
  const rev = st.revision + 1;
  const events: WatchEvent[] = [];
  for (const o of ops) {
    const cur = st.kvs.get(o.key);
    if (o.op === 'put') {
      const s: StoredKv = { value: o.value, mod: rev, create: cur ? cur.create : rev };
      if (o.lease !== undefined) s.lease = o.lease;
      st.kvs.set(o.key, s);
      events.push({ type: 'put', kv: toKeyValue(o.key, s), revision: rev });
    } else if (cur) {
      st.kvs.delete(o.key);
      events.push({ type: 'delete', key: o.key, revision: rev });
    }
  }
  if (events.length > 0) st.revision = rev;
  return { applied: true, events };
}

export function grantLease(st: EngineState, id: string, ttl: number, now: number): void {
  st.leases.set(id, { ttl, expiresAt: now + ttl * 1000 });
}

/** Renews a live lease; false if it is gone or already past its expiry. */
export function renewLease(st: EngineState, id: string, now: number): boolean {
  const l = st.leases.get(id);
  if (!l || l.expiresAt <= now) return false;
  l.expiresAt = now + l.ttl * 1000;
  return true;
}

/** Drops leases and deletes their keys, all in one revision. */
export function dropLeases(st: EngineState, ids: Iterable<string>): WatchEvent[] {
  const dead = new Set<string>();
  for (const id of ids) if (st.leases.delete(id)) dead.add(id);
  if (dead.size === 0) return [];
  const ops: TxnOp[] = [];
  for (const [k, s] of st.kvs) if (s.lease !== undefined && dead.has(s.lease)) ops.push({ op: 'delete', key: k });
  ops.sort((a, b) => (a.key < b.key ? -1 : 1));
  return applyTxn(st, [], ops, 0).events;
}

export function expiredLeases(st: EngineState, now: number): string[] {
  const out: string[] = [];
  for (const [id, l] of st.leases) if (l.expiresAt <= now) out.push(id);
  return out;
}

/** Earliest lease expiry, to schedule the next sweep. */
export function nextExpiry(st: EngineState): number | undefined {
  let min: number | undefined;
  for (const l of st.leases.values()) if (min === undefined || l.expiresAt < min) min = l.expiresAt;
  return min;
}

/**
 * Appends changes to the history and trims it to at most `limit` events,
 * never splitting one revision, so a resumed watch sees whole transactions.
 */
export function recordHistory(st: EngineState, events: WatchEvent[], limit: number): void {
  if (events.length === 0) return;
  st.history.push(...events);
  if (st.history.length <= limit) return;
  let cut = st.history.length - limit;
  while (cut < st.history.length && st.history[cut].revision === st.history[cut - 1].revision) cut++;
  st.compacted = st.history[cut - 1].revision;
  st.history.splice(0, cut);
}

/** Events with revision >= from, or undefined if part of that range is compacted. */
export function historyFrom(st: EngineState, from: number): WatchEvent[] | undefined {
  if (from <= st.compacted) return undefined;
  // History is sorted: binary search for the first event at or after `from`.
  let lo = 0;
  let hi = st.history.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (st.history[mid].revision < from) lo = mid + 1;
    else hi = mid;
  }
  return st.history.slice(lo);
}

export function matchesPrefix(ev: WatchEvent, prefix: string): boolean {
  return (ev.type === 'put' ? ev.kv.key : ev.key).startsWith(prefix);
}
