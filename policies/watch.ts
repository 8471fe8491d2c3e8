/**
 * Live policies for DNS and the sidecar. `createPolicyWatcher` follows either
 * the cluster store (list, then watch from the listed revision) or a local
 * policy file (fs.watch plus a debounce) and hands out whole, validated
 * snapshots, swapped atomically: a reader holding a snapshot never sees it
 * change, and a bad edit never replaces a good snapshot.
 *
 *   const w = createPolicyWatcher({ store });          // or { file: 'policies.yaml' }
 *   const first = await w.start();
 *   const off = w.subscribe((snap) => router.swap(snap));
 *   w.current().policyByService.get('default/reviews');
 *   await w.stop();
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { keys } from '../store/keys';
import type { Store, Watch, WatchEvent } from '../store/types';
import { MeshworkError, withContext } from '../lib/errors';
import { PolicyValidationError } from './errors';
import { loadPolicies, nsName, readPolicySources, serviceKeyOf } from './load';
import type { PolicyDocument, Service, TrafficPolicy } from './model';
import { canonicalJson, decodeStored } from './stored';

export interface PolicySnapshot {
  /** Keyed "namespace/name". */
  readonly services: ReadonlyMap<string, Service>;
  /** Keyed "namespace/name" of the policy. */
  readonly trafficPolicies: ReadonlyMap<string, TrafficPolicy>;
  /** The policy governing each service, keyed "namespace/name" of the service. */
  readonly policyByService: ReadonlyMap<string, TrafficPolicy>;
  /** Store revision the snapshot reflects; for a file, a count of successful loads. */
  readonly revision: number;
}

/** Optional counters; see policies/metrics.ts for the Prometheus ones. */
export interface PolicyWatcherMetrics {
  reload(result: 'success' | 'failure'): void;
  snapshot?(snap: PolicySnapshot): void;
}

interface CommonOptions {
  /** Changes arriving within this window become one snapshot (a transaction's events, an editor's writes). */
  debounceMs?: number;
  metrics?: PolicyWatcherMetrics;
  /** A refused reload (invalid file edit, corrupt store entry, watch failure). The previous snapshot stays. */
  onError?: (err: Error) => void;
}
export type PolicyWatcherOptions = CommonOptions & ({ store: Store } | { file: string });

export interface PolicyWatcher {
  /** Loads the first snapshot (throws if it is invalid) and starts following changes. */
  start(): Promise<PolicySnapshot>;
  stop(): Promise<void>;
  /** The snapshot in force. */
  current(): PolicySnapshot;
  /** Called with each new snapshot; returns an unsubscribe function. */
  subscribe(fn: (snap: PolicySnapshot) => void): () => void;
}

export class PolicyWatchError extends MeshworkError {
  constructor(message: string, options?: { cause?: unknown }) { super('EPOLICYWATCH', message, options); }
}

export function buildSnapshot(docs: Iterable<PolicyDocument>, revision: number): PolicySnapshot {
  const services = new Map<string, Service>();
  const trafficPolicies = new Map<string, TrafficPolicy>();
  const policyByService = new Map<string, TrafficPolicy>();
  for (const d of docs) {
    const id = nsName(d.metadata.namespace, d.metadata.name);
    if (d.kind === 'Service') services.set(id, d);
    else { trafficPolicies.set(id, d); policyByService.set(serviceKeyOf(d), d); }
  }
  return Object.freeze({ services, trafficPolicies, policyByService, revision });
}

export function createPolicyWatcher(opts: PolicyWatcherOptions): PolicyWatcher {
  let snap: PolicySnapshot | undefined;
  const subscribers = new Set<(s: PolicySnapshot) => void>();
  const report = (err: Error) => { opts.metrics?.reload('failure'); opts.onError?.(err); };
  const swap = (next: PolicySnapshot) => {
    snap = next;
    opts.metrics?.reload('success');
    opts.metrics?.snapshot?.(next);
    for (const fn of [...subscribers]) fn(next);
  };
  const source = 'store' in opts ? storeSource(opts.store, opts.debounceMs ?? 20, swap, report) : fileSource(opts.file, opts.debounceMs ?? 100, () => snap, swap, report);
  return {
    async start() {
      const first = await source.start();
      snap = first;
      opts.metrics?.reload('success');
      opts.metrics?.snapshot?.(first);
      return first;
    },
    stop: () => source.stop(),
    current() {
      if (!snap) throw new PolicyWatchError('policy watcher not started');
      return snap;
    },
    subscribe(fn) { subscribers.add(fn); return () => { subscribers.delete(fn); }; },
  };
}

interface Source { start(): Promise<PolicySnapshot>; stop(): Promise<void> }

function storeSource(store: Store, debounceMs: number, swap: (s: PolicySnapshot) => void, report: (e: Error) => void): Source {
  const docs = new Map<string, PolicyDocument>();
  let revision = 0;
  let watch: Watch | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const prefix = keys.policies();

  const decodeInto = (key: string, value: string) => {
    try { docs.set(key, decodeStored(key, value)); } catch (e) {
      // The last good version of this key stays; apply never writes such an entry.
      report(withContext(`store entry ${key}`, e));
    }
  };
  const list = async () => {
    const r = await store.list(prefix);
    docs.clear();
    for (const kv of r.items) decodeInto(kv.key, kv.value);
    revision = r.revision;
  };
  const flush = () => { timer = undefined; if (!stopped) swap(buildSnapshot(docs.values(), revision)); };
  const onEvent = (ev: WatchEvent) => {
    if (ev.type === 'put') decodeInto(ev.kv.key, ev.kv.value);
    else docs.delete(ev.key);
    revision = Math.max(revision, ev.revision);
    // One snapshot per burst: a multi-document apply arrives as several events.
    if (!timer) timer = setTimeout(flush, debounceMs);
  };
  const follow = async () => {
    watch = await store.watch(prefix, onEvent, {
      fromRevision: revision + 1,
      onError: (err) => {
        // Compacted past our revision: re-list and follow again.
        report(withContext('policy watch', err));
        if (stopped) return;
        void (async () => {
          try { await watch?.close(); await list(); flush(); await follow(); } catch (e) { report(withContext('policy watch re-list', e)); }
        })();
      },
    });
  };
  return {
    async start() {
      await list();
      await follow();
      return buildSnapshot(docs.values(), revision);
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await watch?.close();
    },
  };
}

function fileSource(file: string, debounceMs: number, current: () => PolicySnapshot | undefined, swap: (s: PolicySnapshot) => void, report: (e: Error) => void): Source {
  let watcher: fs.FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  let loads = 0;
  let lastJson = '';
  const load = (): { snap: PolicySnapshot; json: string } => {
    const r = loadPolicies(readPolicySources([file]));
    if (r.issues.length > 0) throw new PolicyValidationError(r.issues);
    const docs = r.documents.map((d) => d.document);
    return { snap: buildSnapshot(docs, loads + 1), json: canonicalJson(docs) };
  };
  const reload = () => {
    timer = undefined;
    let next: { snap: PolicySnapshot; json: string };
    try { next = load(); } catch (e) { report(e as Error); return; }
    if (next.json === lastJson && current()) return; // a touch or a rewrite with the same content
    loads++; lastJson = next.json;
    swap(next.snap);
  };
  return {
    async start() {
      const first = load();
      loads = 1; lastJson = first.json;
      // Watch the directory: editors replace files by rename, which a file watch would lose.
      const isDir = fs.statSync(file).isDirectory();
      const dir = isDir ? file : path.dirname(file);
      const base = path.basename(file);
      watcher = fs.watch(dir, (_event, name) => {
        if (!isDir && name !== null && name !== base) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(reload, debounceMs);
      });
      watcher.on('error', (e) => report(new PolicyWatchError(`watching ${file}: ${e.message}`, { cause: e })));
      return first.snap;
    },
    async stop() {
      if (timer) clearTimeout(timer);
      watcher?.close();
    },
  };
}
