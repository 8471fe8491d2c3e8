/**
 * The embedded default store: cluster state in one directory on one host,
 * shared by every meshwork process there (CNI plugin runs, the agent, the CLI)
 * with no server.
 *
 * Layout: snapshot.json (the state at some revision, naming its log) and
 * wal-<id>.log (one JSON line per change since). A write, under the
 * cross-process lock (filelock.ts), catches up with the log, applies the
 * change, appends one line and fdatasyncs: its cost does not grow with the
 * store. When the log passes `walBytes`, the writer folds it into a new
 * snapshot (temp file, fsync, rename, directory fsync) and starts a new log.
 * A writer killed at any instant leaves at most a torn last line, which is
 * never read and is cut by the next writer. Readers take no lock: they re-read
 * only what was appended since they last looked.
 *
 * Leases carry an absolute expiry; their holder renews them. The first
 * process to touch the store after an expiry deletes the lease's keys in one
 * revision, and processes with open watches check expiries on every poll, so a
 * dead holder's keys go within about a quarter second of the TTL even if
 * nobody writes. Watches follow the directory with fs.watch plus a short poll
 * and deliver from the change history (kept across snapshots), so they work
 * across processes and resume from any revision still kept.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { KeyValue, Lease, ListResult, Store, TxnCompare, TxnOp, Watch, WatchEvent, WatchOptions } from './types';
import * as engine from './engine';
import * as format from './file-format';
import { FileLock } from './filelock';
import { LeaseLostError, LeaseNotFoundError, StoreArgumentError, StoreClosedError, StoreCompactedError, StoreCorruptError, StoreUnavailableError } from './errors';
import { WatcherSet, type Watcher } from './watchers';
import { withContext } from '../lib/errors';

export interface FileStoreOptions {
  /** Changes kept for resuming watches (default 1000). */
  historyLimit?: number;
  /** Log size that triggers a new snapshot (default 4 MiB). */
  walBytes?: number;
  /** How often watchers re-check the store and lease expiries (default 250 ms). */
  pollMs?: number;
  /** Give up waiting for the lock after this long (default 10 s). */
  lockTimeoutMs?: number;
  /** fsync/fdatasync on every write (default true). */
  durable?: boolean;
}

const SNAPSHOT = 'snapshot.json';
const FIRST_WAL = 'wal-0.log';

/** What this process knows of the store: a snapshot plus the log read so far. */
interface View {
  snapStamp: string;
  wal: string;
  readFd?: number;
  offset: number;
  st: engine.EngineState;
}

interface Change<T> {
  result: T;
  events?: WatchEvent[];
  leaseSet?: Array<[string, number, number]>;
  leaseDrop?: string[];
}

export async function openFileStore(dir: string, opts: FileStoreOptions = {}): Promise<Store> {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.W_OK);
  } catch (err) {
    throw new StoreUnavailableError(`file store ${dir}: directory not usable: ${(err as Error).message}`, { cause: err });
  }
  return createFileStore(dir, opts);
}

function stampOf(s: fs.BigIntStats): string {
  return `${s.ino}:${s.mtimeNs}:${s.size}`;
}

function createFileStore(dir: string, opts: FileStoreOptions): Store {
  const historyLimit = opts.historyLimit ?? 1000;
  const walBytes = opts.walBytes ?? 4 * 1024 * 1024;
  const pollMs = opts.pollMs ?? 250;
  const lockTimeoutMs = opts.lockTimeoutMs ?? 10_000;
  const durable = opts.durable ?? true;
  const snapFile = path.join(dir, SNAPSHOT);
  const lock = new FileLock(path.join(dir, 'store.lock'));
  const watchers = new WatcherSet();
  const live = new Set<Watcher>();
  const held = new Map<string, { timer: NodeJS.Timeout; lost: Array<(err: Error) => void>; done: boolean }>();
  let view: View | undefined;
  let appendFd: { wal: string; fd: number } | undefined;
  let dirFd: number | undefined;
  let fsWatcher: fs.FSWatcher | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let refreshQueued = false;
  let cleaned = false;
  let closed = false;

  const where = (op: string) => `file store ${dir}: ${op}`;
  function open(op: string): void { if (closed) throw new StoreClosedError(where(op)); }

  function syncDir(): void {
    if (!durable) return;
    if (dirFd === undefined) dirFd = fs.openSync(dir, 'r');
    fs.fsyncSync(dirFd);
  }

  function dropView(): void {
    if (view?.readFd !== undefined) fs.closeSync(view.readFd);
    view = undefined;
  }

  /** Loads the snapshot if it changed, then reads what the log gained since last time. */
  function sync(): View {
    for (let attempt = 0; ; attempt++) {
      let stamp = 'none';
      try {
        stamp = stampOf(fs.statSync(snapFile, { bigint: true }));
      } catch (err: any) {
        if (err?.code !== 'ENOENT') throw err;
      }
      if (!view || view.snapStamp !== stamp) {
        dropView();
        if (stamp === 'none') {
          view = { snapStamp: stamp, wal: FIRST_WAL, offset: 0, st: engine.emptyState() };
        } else {
          const snap = format.decodeSnapshot(snapFile, fs.readFileSync(snapFile, 'utf8'));
          view = { snapStamp: stamp, wal: snap.wal, offset: 0, st: snap.st };
        }
      }
      const v = view;
      if (v.readFd === undefined) {
        try {
          v.readFd = fs.openSync(path.join(dir, v.wal), 'r');
        } catch (err: any) {
          if (err?.code !== 'ENOENT') throw err;
          // No log yet, or a compaction replaced snapshot and log since we looked: look again.
          if (attempt < 3 && stamp !== 'none') { dropView(); continue; }
          return v;
        }
      }
      const size = fs.fstatSync(v.readFd).size;
      if (size > v.offset) {
        const chunk = Buffer.allocUnsafe(size - v.offset);
        const n = fs.readSync(v.readFd, chunk, 0, chunk.length, v.offset);
        const { records, consumed } = format.parseRecords(path.join(dir, v.wal), chunk.subarray(0, n), v.offset);
        for (const rec of records) format.applyRecord(v.st, rec, historyLimit);
        v.offset += consumed;
      }
      return v;
    }
  }

  function appendRecord(v: View, rec: format.WalRecord): void {
    if (!appendFd || appendFd.wal !== v.wal) {
      if (appendFd) fs.closeSync(appendFd.fd);
      const file = path.join(dir, v.wal);
      const existed = fs.existsSync(file);
      appendFd = { wal: v.wal, fd: fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o644) };
      if (!existed) syncDir();
      if (v.readFd === undefined) v.readFd = fs.openSync(file, 'r');
    }
    // A torn line left by a writer that died: cut it before appending.
    const size = fs.fstatSync(appendFd.fd).size;
    if (size > v.offset) fs.ftruncateSync(appendFd.fd, v.offset);
    const line = Buffer.from(format.encodeRecord(rec));
    fs.writeSync(appendFd.fd, line);
    if (durable) fs.fdatasyncSync(appendFd.fd);
    v.offset += line.length;
  }

  /** Folds the log into a new snapshot and starts an empty log. */
  function compact(v: View): void {
    const wal = `wal-${crypto.randomBytes(6).toString('hex')}.log`;
    fs.closeSync(fs.openSync(path.join(dir, wal), 'wx', 0o644));
    const tmp = `${snapFile}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    const fd = fs.openSync(tmp, 'wx', 0o644);
    try {
      fs.writeSync(fd, format.encodeSnapshot(v.st, wal));
      if (durable) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, snapFile);
    syncDir();
    const old = v.wal;
    const st = v.st;
    dropView();
    if (appendFd) fs.closeSync(appendFd.fd);
    appendFd = undefined;
    fs.rmSync(path.join(dir, old), { force: true });
    view = { snapStamp: stampOf(fs.statSync(snapFile, { bigint: true })), wal, offset: 0, st };
  }

  /** Removes what dead writers left: temp files and logs no snapshot names. Under the lock. */
  function cleanUp(v: View): void {
    for (const name of fs.readdirSync(dir)) {
      const stale = name.includes('.tmp-') || (name.startsWith('wal-') && name.endsWith('.log') && name !== v.wal);
      if (stale) fs.rmSync(path.join(dir, name), { force: true });
    }
  }

  /**
   * Runs `fn` on the exact current state under the lock, after dropping
   * expired leases; logs what changed and offers it to local watchers.
   */
  async function locked<T>(op: string, fn: (st: engine.EngineState, now: number) => Change<T>): Promise<T> {
    const deadline = Date.now() + lockTimeoutMs;
    let wait = 0;
    for (;;) {
      open(op);
      if (lock.tryAcquire()) break;
      if (Date.now() > deadline) throw new StoreUnavailableError(`${where(op)}: lock ${lock.path} held by pid ${lock.holder()} for over ${lockTimeoutMs} ms`);
      // Critical sections take about a millisecond: poll briskly, back off a little.
      wait = Math.min(wait + 1, 4);
      await new Promise((r) => setTimeout(r, wait));
    }
    let result: T;
    try {
      const v = sync();
      if (lock.brokeStale || !cleaned) {
        cleanUp(v);
        lock.brokeStale = false;
        cleaned = true;
      }
      const now = Date.now();
      const expired = engine.expiredLeases(v.st, now);
      const expiredEvents = engine.dropLeases(v.st, expired);
      const ch = fn(v.st, now);
      result = ch.result;
      const events = [...expiredEvents, ...(ch.events ?? [])];
      const drops = [...expired, ...(ch.leaseDrop ?? [])];
      if (events.length > 0 || drops.length > 0 || (ch.leaseSet?.length ?? 0) > 0) {
        const rec: format.WalRecord = { r: v.st.revision };
        if (events.length > 0) rec.ev = events;
        if (ch.leaseSet?.length) rec.ls = ch.leaseSet;
        if (drops.length > 0) rec.ld = drops;
        appendRecord(v, rec);
        engine.recordHistory(v.st, events, historyLimit);
        if (v.offset > walBytes) compact(v);
      }
    } catch (err) {
      dropView(); // possibly half-applied in memory: re-read from disk next time
      throw err instanceof StoreArgumentError || err instanceof LeaseNotFoundError || err instanceof StoreCorruptError ? err : withContext(where(op), err);
    } finally {
      lock.release();
    }
    refresh();
    return result;
  }

  /** The state for a read; if a lease has expired, delete its keys first. */
  async function readState(op: string): Promise<engine.EngineState> {
    open(op);
    let v: View;
    try {
      v = sync();
    } catch (err) {
      dropView();
      throw err instanceof StoreCorruptError ? err : withContext(where(op), err);
    }
    if (engine.expiredLeases(v.st, Date.now()).length === 0) return v.st;
    await locked(op, () => ({ result: undefined }));
    return sync().st;
  }

  function write(op: string, compares: TxnCompare[], ops: TxnOp[]): Promise<{ applied: boolean; revision: number }> {
    return locked(op, (st, now) => {
      const r = engine.applyTxn(st, compares, ops, now);
      return { result: { applied: r.applied, revision: st.revision }, events: r.events };
    });
  }

  /** Brings every local watcher up to date with the store; sweeps expired leases. */
  function refresh(): void {
    if (closed || live.size === 0) return;
    let st: engine.EngineState;
    try {
      st = sync().st;
    } catch {
      dropView();
      return; // unreadable for a moment: the next poll retries
    }
    for (const w of [...live]) {
      if (w.closed) { live.delete(w); continue; }
      if (w.next > st.revision) continue;
      const past = engine.historyFrom(st, w.next);
      if (past) watchers.offerTo(w, past);
      else {
        live.delete(w);
        watchers.fail(w, new StoreCompactedError(w.next, st.compacted, where(`watch ${w.prefix}`)));
      }
    }
    if (engine.expiredLeases(st, Date.now()).length > 0) {
      locked('lease expiry', () => ({ result: undefined })).catch(() => { /* retried on the next poll */ });
    }
  }

  function queueRefresh(): void {
    if (refreshQueued) return;
    refreshQueued = true;
    setImmediate(() => { refreshQueued = false; refresh(); });
  }

  function startFollowing(): void {
    if (!fsWatcher) {
      try {
        fsWatcher = fs.watch(dir, { persistent: false }, (_ev, name) => {
          if (!name || name === SNAPSHOT || name.startsWith('wal-')) queueRefresh();
        });
        fsWatcher.on('error', () => { fsWatcher?.close(); fsWatcher = undefined; });
      } catch { /* the poll still covers us */ }
    }
    // Not unref'd: a live watch keeps its process alive, as a socket would.
    if (!pollTimer) pollTimer = setInterval(refresh, pollMs);
  }

  function stopFollowingIfIdle(): void {
    for (const w of live) if (w.closed) live.delete(w);
    if (live.size > 0) return;
    fsWatcher?.close();
    fsWatcher = undefined;
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = undefined;
  }

  function endLease(id: string, err?: Error): void {
    const h = held.get(id);
    if (!h || h.done) return;
    h.done = true;
    clearInterval(h.timer);
    held.delete(id);
    if (err) for (const cb of h.lost) queueMicrotask(() => cb(err));
  }

  function renew(id: string): Promise<boolean> {
    return locked('renew lease', (st, now) => {
      if (!engine.renewLease(st, id, now)) return { result: false };
      const l = st.leases.get(id)!;
      return { result: true, leaseSet: [[id, l.ttl, l.expiresAt]] };
    });
  }

  return {
    async get(key): Promise<KeyValue | undefined> {
      engine.checkKey(key, 'get');
      return engine.getKv(await readState('get'), key);
    },

    async list(prefix): Promise<ListResult> {
      if (typeof prefix !== 'string') throw new StoreArgumentError('list: prefix must be a string');
      return engine.listPrefix(await readState('list'), prefix);
    },

    async put(key, value, o) {
      engine.checkKey(key, 'put');
      engine.checkValue(value, `put ${key}`);
      const ops: TxnOp[] = [{ op: 'put', key, value, lease: o?.lease }];
      engine.checkTxn([], ops);
      return (await write(`put ${key}`, [], ops)).revision;
    },

    async cas(key, expected, value, o) {
      const { compares, ops } = engine.casTxn(key, expected, value, o?.lease);
      return (await write(`cas ${key}`, compares, ops)).applied;
    },

    async txn(compares, ops) {
      engine.checkTxn(compares, ops);
      return (await write('txn', compares, ops)).applied;
    },

    async delete(key) {
      engine.checkKey(key, 'delete');
      return locked(`delete ${key}`, (st, now) => {
        const existed = st.kvs.has(key);
        return { result: existed, events: engine.applyTxn(st, [], [{ op: 'delete', key }], now).events };
      });
    },

    async grantLease(ttlSeconds): Promise<Lease> {
      engine.checkTtl(ttlSeconds);
      const id = crypto.randomBytes(8).toString('hex');
      await locked('grant lease', (st, now) => {
        engine.grantLease(st, id, ttlSeconds, now);
        return { result: undefined, leaseSet: [[id, ttlSeconds, st.leases.get(id)!.expiresAt]] };
      });
      const h = { timer: undefined as unknown as NodeJS.Timeout, lost: [] as Array<(err: Error) => void>, done: false };
      // Renew three times per TTL so one slow renewal does not lose the lease.
      h.timer = setInterval(() => {
        renew(id).then(
          (ok) => { if (!ok) endLease(id, new LeaseLostError(id, `expired before renewal (ttl ${ttlSeconds}s)`)); },
          (err) => { if (err instanceof StoreClosedError) endLease(id); },
        );
      }, Math.max(100, (ttlSeconds * 1000) / 3));
      h.timer.unref();
      held.set(id, h);
      return {
        id,
        ttlSeconds,
        async keepAlive() {
          if (!(await renew(id))) {
            const err = new LeaseLostError(id, 'expired or revoked');
            endLease(id, err);
            throw err;
          }
        },
        async revoke() {
          endLease(id);
          await locked('revoke lease', (st) => ({ result: undefined, events: engine.dropLeases(st, [id]), leaseDrop: [id] }));
        },
        onLost(cb) {
          held.get(id)?.lost.push(cb);
        },
      };
    },

    async watch(prefix, onEvent, o: WatchOptions = {}): Promise<Watch> {
      if (typeof prefix !== 'string') throw new StoreArgumentError('watch: prefix must be a string');
      const st = await readState(`watch ${prefix}`);
      const from = o.fromRevision ?? st.revision + 1;
      if (!Number.isInteger(from) || from < 1) throw new StoreArgumentError(`watch ${prefix}: fromRevision must be an integer >= 1, got ${String(o.fromRevision)}`);
      const past = engine.historyFrom(st, from);
      if (!past && !o.onError) throw new StoreCompactedError(from, st.compacted, where(`watch ${prefix}`));
      const w = watchers.add(prefix, from, onEvent, o.onError);
      if (!past) {
        watchers.fail(w, new StoreCompactedError(from, st.compacted, where(`watch ${prefix}`)));
        return w;
      }
      live.add(w);
      watchers.offerTo(w, past);
      startFollowing();
      return {
        async close() {
          await w.close();
          stopFollowingIfIdle();
        },
      };
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const id of [...held.keys()]) endLease(id);
      watchers.closeAll();
      live.clear();
      stopFollowingIfIdle();
      dropView();
      if (appendFd) fs.closeSync(appendFd.fd);
      appendFd = undefined;
      if (dirFd !== undefined) fs.closeSync(dirFd);
      dirFd = undefined;
    },
  };
}
