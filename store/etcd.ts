/**
 * The Store on a real etcd v3 cluster through the `etcd3` client.
 *
 * Notes on the client's behaviour this file works around:
 * - It connects lazily, and an unreachable member makes calls wait; so every
 *   unary call carries a deadline, and opening the store probes the cluster
 *   once so a bad endpoint list fails at open with a clear error.
 * - Its watch resumes after a disconnect from the *response header* revision,
 *   which can skip events still in flight (etcd batches a backlog). We track
 *   the revision of the last event we delivered and put it back into the
 *   watch request before every re-attach, and drop anything older, so a
 *   resumed watch neither misses nor repeats a change.
 * - It multiplexes every watch of a client on one stream and mishandles
 *   etcd cancelling one of them (a resume from a compacted revision): the
 *   cancel can land on another watch, the rest stall unnoticed, or a response
 *   it cannot place throws from the stream's data handler, uncaught, killing
 *   the process. Each watch therefore gets a stream of its own, and a
 *   response the client cannot place resets that stream (the watch resumes
 *   from its pinned revision) instead of throwing.
 * - Its lease reports `lost` only after twice the TTL without contact; we
 *   report it as soon as a TTL passes without a successful keepalive (the
 *   keys may be gone by then) and stop renewing, so the outcome is certain.
 */
import { Etcd3, EtcdLeaseInvalidError, isRecoverableError, GRPCDeadlineExceededError, type IKeyValue, type IOptions, type WatchBuilder } from 'etcd3';
import type { Lease as EtcdLease } from 'etcd3';
import type { KeyValue, Lease, ListResult, Store, TxnCompare, TxnOp, Watch, WatchEvent, WatchOptions } from './types';
import * as engine from './engine';
import { LeaseLostError, LeaseNotFoundError, StoreArgumentError, StoreClosedError, StoreCompactedError, StoreUnavailableError } from './errors';
import { WatcherSet } from './watchers';
import { MeshworkError } from '../lib/errors';

export interface EtcdStoreOptions {
  /** Deadline of each call, and of the probe at open (default 3000 ms). */
  callTimeoutMs?: number;
  /** Keys fetched per page by list (default 1000). */
  pageSize?: number;
}

const enc = (s: string) => Buffer.from(s, 'utf8');

/** The smallest key greater than every key starting with `prefix` (etcd's range_end). */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i] < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1));
      end[i]++;
      return end;
    }
  }
  return Buffer.from([0]); // all keys
}

/** The lease a set of ops writes under, to name it if etcd says it does not exist. */
function leaseOf(ops: TxnOp[]): string | undefined {
  for (const o of ops) if (o.op === 'put' && o.lease) return o.lease;
  return undefined;
}

function toKv(kv: IKeyValue): KeyValue {
  const out: KeyValue = {
    key: kv.key.toString('utf8'),
    value: kv.value.toString('utf8'),
    modRevision: Number(kv.mod_revision),
    createRevision: Number(kv.create_revision),
  };
  if (kv.lease && kv.lease !== '0') out.lease = String(kv.lease);
  return out;
}

/** Doubling reconnect delays from `ms`, capped at `maxMs` (the shape etcd3 expects of a backoff). */
function watchBackoff(ms: number, maxMs: number): NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']> {
  return { duration: ms, next: () => watchBackoff(Math.min(ms * 2, maxMs), maxMs) };
}

/** The client's internal watch multiplexer (not in its typings), as far as we touch it. */
interface WatchManagerInternals {
  handleResponse(res: unknown): void;
  handleCreatedResponse(res: unknown): void;
  handleError(err: Error): void;
}

/** A watch builder on a watch stream of its own (see the notes at the top). */
function ownStreamWatch(client: Etcd3): WatchBuilder {
  const ns = client.namespace(''); // same connections, a new watch multiplexer
  const m = (ns as unknown as { watchManager?: Partial<WatchManagerInternals> }).watchManager;
  if (m && typeof m.handleResponse === 'function' && typeof m.handleCreatedResponse === 'function' && typeof m.handleError === 'function') {
    const reset = m.handleError.bind(m);
    for (const k of ['handleResponse', 'handleCreatedResponse'] as const) {
      const orig = m[k]!.bind(m);
      m[k] = (res: unknown) => {
        try { orig(res); } catch (err) { reset(err as Error); }
      };
    }
  }
  return ns.watch();
}

export async function openEtcdStore(endpoints: string[], opts: EtcdStoreOptions = {}): Promise<Store> {
  if (endpoints.length === 0) throw new StoreArgumentError('etcd store: no endpoints');
  const callTimeoutMs = opts.callTimeoutMs ?? 3000;
  const options: IOptions = {
    hosts: endpoints,
    dialTimeout: callTimeoutMs,
    // Streams (watch, keepalive) live long; everything else must answer quickly.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    // The client's default watch backoff grows to 30 s while it keeps picking
    // a dead member; cap it so a watch is back within a second of a survivor.
    faultHandling: { watchBackoff: watchBackoff(50, 1000) },
  };
  const client = new Etcd3(options);
  const name = `etcd ${endpoints.join(',')}`;
  try {
    await client.kv.range({ key: enc('/meshwork/'), limit: 1, keys_only: true });
  } catch (err) {
    client.close();
    throw new StoreUnavailableError(`${name}: no member reachable within ${callTimeoutMs} ms (${(err as Error).message})`, { cause: err });
  }
  return createEtcdStore(client, name, opts);
}

function createEtcdStore(client: Etcd3, name: string, opts: EtcdStoreOptions): Store {
  const pageSize = opts.pageSize ?? 1000;
  const watchers = new WatcherSet();
  const openWatches = new Set<Watch>();
  const leases = new Set<{ release(): void }>();
  let closed = false;

  function open(op: string): void { if (closed) throw new StoreClosedError(`${name}: ${op}`); }

  /** Maps the client's failures to ours, naming the cluster and the operation. */
  function fail(op: string, err: unknown, lease?: string): Error {
    if (err instanceof MeshworkError) return err;
    const e = err as Error;
    if (e instanceof EtcdLeaseInvalidError || /lease not found/i.test(e?.message ?? '')) {
      return new LeaseNotFoundError(lease ?? 'unknown');
    }
    const unavailable = (e && typeof e === 'object' && isRecoverableError(e)) || e instanceof GRPCDeadlineExceededError || e?.name === 'BrokenCircuitError';
    if (unavailable) return new StoreUnavailableError(`${name}: ${op}: ${e.message}`, { cause: e });
    return new MeshworkError('ESTORE_ETCD', `${name}: ${op}: ${e?.message ?? String(e)}`, { cause: e });
  }

  async function call<T>(op: string, fn: () => Promise<T>, lease?: string): Promise<T> {
    open(op);
    try {
      return await fn();
    } catch (err) {
      throw fail(op, err, lease);
    }
  }

  function toRequestOps(ops: TxnOp[]) {
    return ops.map((o) => (o.op === 'put'
      ? { request_put: { key: enc(o.key), value: enc(o.value), lease: o.lease ?? 0 } }
      : { request_delete_range: { key: enc(o.key) } }));
  }

  async function txn(op: string, compares: TxnCompare[], ops: TxnOp[]): Promise<boolean> {
    const res = await call(op, () => client.kv.txn({
      compare: compares.map((c) => ({ key: enc(c.key), target: 'Mod' as const, result: 'Equal' as const, mod_revision: c.modRevision })),
      success: toRequestOps(ops),
      failure: [],
    }), leaseOf(ops));
    return res.succeeded;
  }

  return {
    async get(key) {
      engine.checkKey(key, 'get');
      const res = await call(`get ${key}`, () => client.kv.range({ key: enc(key) }));
      return res.kvs.length > 0 ? toKv(res.kvs[0]) : undefined;
    },

    async list(prefix): Promise<ListResult> {
      if (typeof prefix !== 'string') throw new StoreArgumentError('list: prefix must be a string');
      const end = prefixEnd(prefix);
      const items: KeyValue[] = [];
      let from = prefix === '' ? Buffer.from([0]) : enc(prefix);
      let revision: number | undefined;
      // Page through large listings, all pages at one revision, so the
      // result is one consistent snapshot however big.
      for (;;) {
        const res = await call(`list ${prefix}`, () => client.kv.range({ key: from, range_end: end, limit: pageSize, revision: revision ?? 0 }));
        if (revision === undefined) revision = Number(res.header.revision);
        for (const kv of res.kvs) items.push(toKv(kv));
        if (!res.more || res.kvs.length === 0) break;
        from = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from([0])]);
      }
      return { items, revision };
    },

    async put(key, value, o) {
      engine.checkKey(key, 'put');
      engine.checkValue(value, `put ${key}`);
      engine.checkTxn([], [{ op: 'put', key, value, lease: o?.lease }]);
      const res = await call(`put ${key}`, () => client.kv.put({ key: enc(key), value: enc(value), lease: o?.lease ?? 0 }), o?.lease);
      return Number(res.header.revision);
    },

    async cas(key, expected, value, o) {
      const { compares, ops } = engine.casTxn(key, expected, value, o?.lease);
      return txn(`cas ${key}`, compares, ops);
    },

    async txn(compares, ops) {
      engine.checkTxn(compares, ops);
      return txn('txn', compares, ops);
    },

    async delete(key) {
      engine.checkKey(key, 'delete');
      const res = await call(`delete ${key}`, () => client.kv.deleteRange({ key: enc(key) }));
      return Number(res.deleted) > 0;
    },

    async grantLease(ttlSeconds): Promise<Lease> {
      engine.checkTtl(ttlSeconds);
      open('grantLease');
      const lease: EtcdLease = client.lease(ttlSeconds);
      const lostCbs: Array<(err: Error) => void> = [];
      let ended = false;
      let watchdog: NodeJS.Timeout | undefined;
      const end = (err?: Error) => {
        if (ended) return;
        ended = true;
        if (watchdog) clearTimeout(watchdog);
        leases.delete(handle);
        lease.release();
        if (err) for (const cb of lostCbs) queueMicrotask(() => cb(err));
      };
      const handle = { release: () => end() };
      let id: string;
      try {
        id = String(await lease.grant());
      } catch (err) {
        lease.release();
        throw fail(`grant lease (ttl ${ttlSeconds}s)`, err);
      }
      // Lost once a whole TTL passes with no successful renewal.
      const arm = () => {
        if (watchdog) clearTimeout(watchdog);
        watchdog = setTimeout(() => end(new LeaseLostError(id, `no successful keepalive for ${ttlSeconds}s from ${name}`)), ttlSeconds * 1000);
        watchdog.unref();
      };
      arm();
      lease.on('keepaliveSucceeded', arm);
      lease.on('lost', (err) => end(new LeaseLostError(id, err.message, { cause: err })));
      leases.add(handle);
      return {
        id,
        ttlSeconds,
        async keepAlive() {
          try {
            await call(`keepalive lease ${id}`, () => lease.keepaliveOnce(), id);
            arm();
          } catch (err) {
            if (err instanceof LeaseNotFoundError) {
              const lost = new LeaseLostError(id, 'expired or revoked');
              end(lost);
              throw lost;
            }
            throw err;
          }
        },
        async revoke() {
          end();
          await call(`revoke lease ${id}`, () => lease.revoke());
        },
        onLost(cb) { lostCbs.push(cb); },
      };
    },

    async watch(prefix, onEvent, o: WatchOptions = {}): Promise<Watch> {
      open(`watch ${prefix}`);
      if (typeof prefix !== 'string') throw new StoreArgumentError('watch: prefix must be a string');
      if (o.fromRevision !== undefined && (!Number.isInteger(o.fromRevision) || o.fromRevision < 1)) {
        throw new StoreArgumentError(`watch ${prefix}: fromRevision must be an integer >= 1, got ${String(o.fromRevision)}`);
      }
      const where = `${name}: watch ${prefix}`;
      const builder = ownStreamWatch(client).inRange({ start: prefix === '' ? Buffer.from([0]) : enc(prefix), end: prefixEnd(prefix) });
      if (o.fromRevision !== undefined) builder.startRevision(String(o.fromRevision));
      const w = watchers.add(prefix, o.fromRevision ?? 0, onEvent, o.onError);
      // etcd cancels a watch whose start revision is compacted, but the client
      // hides why (empty reason, compact_revision dropped): ask with a range read.
      const explain = async (err: Error): Promise<Error> => {
        const from = w.next > 0 ? w.next : o.fromRevision ?? 0;
        let isCompacted = /compacted/i.test(err.message);
        if (!isCompacted && from > 0) {
          try {
            await client.kv.range({ key: enc(prefix || '\0'), limit: 1, keys_only: true, revision: from });
          } catch (probe) {
            isCompacted = /compacted/i.test((probe as Error).message);
          }
        }
        return isCompacted ? new StoreCompactedError(from, undefined, where) : fail(`watch ${prefix}`, err);
      };
      // Check before attaching: etcd answers a compacted start with a watch
      // both created and cancelled, which this client mishandles (its attach
      // queue stalls, and every later watch on the client with it).
      if (o.fromRevision !== undefined) {
        const err = await explain(new Error('watch start check'));
        if (err instanceof StoreCompactedError) {
          if (!o.onError) { void w.close(); throw err; }
          watchers.fail(w, err);
          return { close: async () => undefined };
        }
      }
      const etcdWatcher = builder.watcher();
      // Runs after the client's own handlers (registered in its constructor),
      // so the resume point is always the one we computed.
      const pinResume = () => { if (w.next > 0) etcdWatcher.request.start_revision = String(w.next); };
      etcdWatcher.on('connected', (res) => {
        if (w.next === 0) w.next = Number(res.header.revision) + 1;
        pinResume();
      });
      etcdWatcher.on('data', (res) => {
        if (res.events.length === 0) {
          // Progress notification: everything up to the header revision was sent.
          w.next = Math.max(w.next, Number(res.header.revision) + 1);
        } else {
          const evs: WatchEvent[] = res.events.map((ev) => (ev.type === 'Put'
            ? { type: 'put' as const, kv: toKv(ev.kv), revision: Number(ev.kv.mod_revision) }
            : { type: 'delete' as const, key: ev.kv.key.toString('utf8'), revision: Number(ev.kv.mod_revision) }));
          watchers.offerTo(w, evs);
        }
        pinResume();
      });
      let established = false;
      // The client emits 'error' only when etcd cancelled the watch, and has
      // dropped it already: cancelling again would ask etcd about an id the
      // client no longer knows, and its answer makes the client throw.
      let cancelledByEtcd = false;
      const cancel = () => (cancelledByEtcd ? Promise.resolve() : etcdWatcher.cancel().catch(() => undefined));
      etcdWatcher.on('error', (err: Error) => {
        cancelledByEtcd = true;
        if (!established) return; // reported by the creation below
        void explain(err).then((e) => watchers.fail(w, e));
      });
      // Wait until etcd confirmed the watch, so a write after this resolves is seen.
      const ready = await new Promise<'ok' | Error>((resolve) => {
        const t = setTimeout(() => resolve(new StoreUnavailableError(`${where}: not established within ${opts.callTimeoutMs ?? 3000} ms`)), opts.callTimeoutMs ?? 3000);
        etcdWatcher.once('connected', () => { clearTimeout(t); resolve('ok'); });
        etcdWatcher.once('error', (err: Error) => { clearTimeout(t); resolve(err); });
      });
      if (ready !== 'ok') {
        await Promise.race([cancel(), new Promise((r) => setTimeout(r, 1000).unref())]);
        const err = ready instanceof MeshworkError ? ready : await explain(ready);
        if (err instanceof StoreCompactedError && o.onError) {
          watchers.fail(w, err);
          return { close: async () => undefined };
        }
        void w.close();
        throw err;
      }
      established = true;
      const handle: Watch = {
        async close() {
          openWatches.delete(handle);
          await w.close();
          // Cancelling waits for etcd's confirmation; don't hang on a dead member.
          await Promise.race([cancel(), new Promise((r) => setTimeout(r, 1000).unref())]);
        },
      };
      openWatches.add(handle);
      return handle;
    },

    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([...openWatches].map((h) => h.close()));
      for (const l of [...leases]) l.release();
      watchers.closeAll();
      client.close();
    },
  };
}
