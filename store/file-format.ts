/**
 * On-disk formats of the file store, pure encode/decode:
 * - snapshot.json: the whole state at one revision, the name of the log that
 *   continues it, and the recent change history (so watches resume across a
 *   compaction);
 * - wal-<id>.log: one JSON line per change (a transaction's events and any
 *   lease grants, renewals or drops). A line counts only once its newline is
 *   written; a torn last line is cut off by the next writer.
 */
import type { WatchEvent } from './types';
import * as engine from './engine';
import { StoreCorruptError } from './errors';

export const FORMAT = 'meshwork-store/2';

interface Snapshot {
  format: string;
  revision: number;
  compacted: number;
  wal: string;
  kvs: Array<[string, string, number, number, string?]>;
  leases: Array<[string, number, number]>;
  history: WatchEvent[];
}

/** One log line: the revision after it, the changes, lease upserts (id, ttl, expiresAt) and drops. */
export interface WalRecord {
  r: number;
  ev?: WatchEvent[];
  ls?: Array<[string, number, number]>;
  ld?: string[];
}

export function encodeSnapshot(st: engine.EngineState, wal: string): string {
  const s: Snapshot = {
    format: FORMAT,
    revision: st.revision,
    compacted: st.compacted,
    wal,
    kvs: [...st.kvs].map(([k, v]) => (v.lease ? [k, v.value, v.mod, v.create, v.lease] : [k, v.value, v.mod, v.create])),
    leases: [...st.leases].map(([id, l]) => [id, l.ttl, l.expiresAt]),
    history: st.history,
  };
  return JSON.stringify(s);
}

export function decodeSnapshot(file: string, text: string): { st: engine.EngineState; wal: string } {
  let s: Snapshot;
  try {
    s = JSON.parse(text) as Snapshot;
  } catch (err) {
    throw new StoreCorruptError(file, 'not valid JSON', { cause: err });
  }
  if (!s || s.format !== FORMAT) throw new StoreCorruptError(file, `unknown format ${JSON.stringify(s?.format)} (expected ${FORMAT})`);
  if (!Number.isInteger(s.revision) || typeof s.wal !== 'string' || !Array.isArray(s.kvs) || !Array.isArray(s.leases) || !Array.isArray(s.history)) {
    throw new StoreCorruptError(file, 'missing revision, wal, kvs, leases or history');
  }
  const kvs = new Map<string, engine.StoredKv>();
  for (const [k, value, mod, create, lease] of s.kvs) kvs.set(k, lease ? { value, mod, create, lease } : { value, mod, create });
  const leases = new Map<string, engine.LeaseState>();
  for (const [id, ttl, expiresAt] of s.leases) leases.set(id, { ttl, expiresAt });
  return { st: { revision: s.revision, compacted: s.compacted ?? 0, kvs, leases, history: s.history }, wal: s.wal };
}

export function encodeRecord(rec: WalRecord): string {
  return `${JSON.stringify(rec)}\n`;
}

/** Applies one log record to a state (the replay side of what a writer did). */
export function applyRecord(st: engine.EngineState, rec: WalRecord, historyLimit: number): void {
  for (const [id, ttl, expiresAt] of rec.ls ?? []) st.leases.set(id, { ttl, expiresAt });
  for (const id of rec.ld ?? []) st.leases.delete(id);
  const evs = rec.ev ?? [];
  for (const ev of evs) {
    if (ev.type === 'put') {
      const kv: engine.StoredKv = { value: ev.kv.value, mod: ev.kv.modRevision, create: ev.kv.createRevision };
      if (ev.kv.lease) kv.lease = ev.kv.lease;
      st.kvs.set(ev.kv.key, kv);
    } else {
      st.kvs.delete(ev.key);
    }
  }
  st.revision = Math.max(st.revision, rec.r);
  engine.recordHistory(st, evs, historyLimit);
}

/**
 * Parses the complete lines of a log chunk; returns the records and how many
 * bytes they span (a trailing partial line is left for later or for cutting).
 */
export function parseRecords(file: string, chunk: Buffer, baseOffset: number): { records: WalRecord[]; consumed: number } {
  const end = chunk.lastIndexOf(0x0a);
  if (end < 0) return { records: [], consumed: 0 };
  const records: WalRecord[] = [];
  let start = 0;
  while (start <= end) {
    const nl = chunk.indexOf(0x0a, start);
    const line = chunk.toString('utf8', start, nl);
    try {
      const rec = JSON.parse(line) as WalRecord;
      if (!Number.isInteger(rec.r)) throw new Error('record without revision');
      records.push(rec);
    } catch (err) {
      throw new StoreCorruptError(file, `bad log record at byte ${baseOffset + start}: ${(err as Error).message}`, { cause: err });
    }
    start = nl + 1;
  }
  return { records, consumed: end + 1 };
}
