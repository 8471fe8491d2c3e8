/**
 * The cluster as DNS sees it: lists, then watches, the Service documents and
 * endpoint records through the Store interface and keeps an immutable index
 * (dns/cluster-index.ts) that is rebuilt and swapped on every change. Records
 * are validated here, at the edge: a malformed one is skipped and reported,
 * never allowed to break the answers for everyone else.
 */
import type { Store, Watch, WatchEvent } from '../store/types';
import { keys } from '../store/keys';
import type { EndpointRecord } from '../store/records';
import type { Service } from '../policies/model';
import { MeshworkError, withContext } from '../lib/errors';
import { buildIndex, type ClusterIndex, type ViewData } from './cluster-index';

const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5000;

export interface Logger { warn(msg: string): void; info?(msg: string): void }

export interface ClusterView {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The current index; replaced whole on change. */
  current(): ClusterIndex;
  /** Bumped on every swap; cached answers from older generations are void. */
  readonly generation: number;
  /** Called after each swap; returns an unsubscribe function. */
  onChange(cb: () => void): () => void;
  /** The raw data behind the index (for replicating to worker processes). */
  data(): ViewData;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStrMap = (v: unknown): v is Record<string, string> => isObj(v) && Object.values(v).every((x) => typeof x === 'string');
const isStrArr = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

export function parseService(json: string, where: string): Service {
  let v: unknown;
  try { v = JSON.parse(json); } catch (e) { throw new MeshworkError('EBADRECORD', `${where}: not JSON`, { cause: e }); }
  const bad = (what: string) => new MeshworkError('EBADRECORD', `${where}: ${what}`);
  if (!isObj(v) || v.kind !== 'Service') throw bad('kind is not Service');
  const m = v.metadata, s = v.spec;
  if (!isObj(m) || typeof m.name !== 'string' || typeof m.namespace !== 'string') throw bad('metadata.name/namespace missing');
  if (!isObj(s) || (s.type !== 'ClusterIP' && s.type !== 'ExternalName')) throw bad('spec.type must be ClusterIP or ExternalName');
  if (s.selector !== undefined && !isStrMap(s.selector)) throw bad('spec.selector must map strings to strings');
  if (!Array.isArray(s.ports) || !s.ports.every((p) => isObj(p) && typeof p.port === 'number' && (p.name === undefined || typeof p.name === 'string'))) throw bad('spec.ports must be a list of {name?, port, protocol}');
  if (s.clusterIP !== undefined && typeof s.clusterIP !== 'string') throw bad('spec.clusterIP must be a string');
  if (s.clusterIPs !== undefined && !isStrArr(s.clusterIPs)) throw bad('spec.clusterIPs must be a list of strings');
  if (s.type === 'ExternalName' && typeof s.externalName !== 'string') throw bad('spec.externalName missing for ExternalName');
  const ports = (s.ports as Array<Record<string, unknown>>).map((p) => ({ ...p, protocol: typeof p.protocol === 'string' ? p.protocol : 'TCP' }));
  return { ...(v as unknown as Service), spec: { ...(s as unknown as Service['spec']), selector: (s.selector as Record<string, string>) ?? {}, ports: ports as unknown as Service['spec']['ports'] } };
}

export function parseEndpoint(json: string, where: string): EndpointRecord {
  let v: unknown;
  try { v = JSON.parse(json); } catch (e) { throw new MeshworkError('EBADRECORD', `${where}: not JSON`, { cause: e }); }
  const bad = (what: string) => new MeshworkError('EBADRECORD', `${where}: ${what}`);
  if (!isObj(v)) throw bad('not an object');
  for (const f of ['network', 'containerId', 'namespace'] as const) if (typeof v[f] !== 'string') throw bad(`${f} must be a string`);
  if (!isStrArr(v.ips)) throw bad('ips must be a list of strings');
  if (v.labels !== undefined && !isStrMap(v.labels)) throw bad('labels must map strings to strings');
  if (v.hostname !== undefined && typeof v.hostname !== 'string') throw bad('hostname must be a string');
  if (v.aliases !== undefined && !isStrArr(v.aliases)) throw bad('aliases must be a list of strings');
  if (typeof v.ready !== 'boolean') throw bad('ready must be a boolean');
  return { ...(v as unknown as EndpointRecord), ips: (v.ips as string[]).map((ip) => ip.replace(/\/\d+$/, '')), labels: (v.labels as Record<string, string>) ?? {} };
}

/** Shared by the store-backed view and the worker replica: swaps and notifies. */
class IndexHolder {
  generation = 0;
  index: ClusterIndex = buildIndex({ services: [], endpoints: [] });
  raw: ViewData = { services: [], endpoints: [] };
  private readonly listeners = new Set<() => void>();
  swap(data: ViewData): void {
    this.raw = data;
    this.index = buildIndex(data);
    this.generation++;
    for (const cb of this.listeners) cb();
  }
  onChange(cb: () => void): () => void { this.listeners.add(cb); return () => this.listeners.delete(cb); }
}

export interface ClusterViewDeps {
  store: Store;
  logger?: Logger;
  /** Coalesces bursts of changes into one rebuild (default 20 ms). */
  debounceMs?: number;
}

export function createClusterView(deps: ClusterViewDeps): ClusterView {
  const holder = new IndexHolder();
  const services = new Map<string, Service>();
  const endpoints = new Map<string, EndpointRecord>();
  const watches: Watch[] = [];
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const debounceMs = deps.debounceMs ?? 20;

  const rebuild = (): void => {
    timer = undefined;
    if (stopped) return;
    holder.swap({ services: [...services.values()], endpoints: [...endpoints.values()] });
  };
  const schedule = (): void => { if (!timer && !stopped) timer = setTimeout(rebuild, debounceMs); };

  const put = (key: string, value: string): void => {
    try {
      if (key.startsWith(keys.policies('Service'))) services.set(key, parseService(value, key));
      else endpoints.set(key, parseEndpoint(value, key));
    } catch (err) {
      // Skip the bad record (and forget an older good version of it): the rest still answers.
      services.delete(key); endpoints.delete(key);
      deps.logger?.warn(`dns view: skipping record: ${(err as Error).message}`);
    }
  };

  const onEvent = (ev: WatchEvent): void => {
    if (ev.type === 'put') put(ev.kv.key, ev.kv.value);
    else { services.delete(ev.key); endpoints.delete(ev.key); }
    schedule();
  };

  // A re-list that fails (the store is down) is retried, backing off, until it works or the
  // view stops: giving up would freeze the answers until a restart.
  const retries = new Set<NodeJS.Timeout>();
  const refollow = (prefix: string, target: Map<string, unknown>, delayMs: number): void => {
    if (stopped) return;
    follow(prefix, target).then(schedule, (e) => {
      if (stopped) return;
      deps.logger?.warn(`dns view: re-list of ${prefix} failed (${(e as Error).message}); retrying in ${delayMs} ms`);
      const t = setTimeout(() => { retries.delete(t); refollow(prefix, target, Math.min(delayMs * 2, RETRY_MAX_MS)); }, delayMs);
      retries.add(t);
    });
  };

  const follow = async (prefix: string, target: Map<string, unknown>): Promise<void> => {
    const listed = await deps.store.list(prefix);
    for (const k of [...target.keys()]) if (k.startsWith(prefix)) target.delete(k);
    for (const kv of listed.items) put(kv.key, kv.value);
    const w = await deps.store.watch(prefix, onEvent, {
      fromRevision: listed.revision + 1,
      onError: (err) => {
        // History compacted or the watch broke: list again from scratch.
        if (stopped) return;
        deps.logger?.warn(`dns view: watch on ${prefix} lost (${err.message}); re-listing`);
        void w.close().catch(() => undefined).then(() => {
          const i = watches.indexOf(w);
          if (i >= 0) watches.splice(i, 1);
          refollow(prefix, target, RETRY_FIRST_MS);
        });
      },
    });
    if (stopped) { await w.close(); return; }
    watches.push(w);
  };

  return {
    async start() {
      try {
        await follow(keys.policies('Service'), services);
        await follow(keys.endpoints(), endpoints);
      } catch (err) {
        throw withContext('dns view: reading the cluster store', err);
      }
      rebuild();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      for (const t of retries) clearTimeout(t);
      retries.clear();
      await Promise.all(watches.splice(0).map((w) => w.close().catch(() => undefined)));
    },
    current: () => holder.index,
    get generation() { return holder.generation; },
    onChange: (cb) => holder.onChange(cb),
    data: () => holder.raw,
  };
}

/** A view fed whole snapshots (by a primary process, or a test): `apply` swaps. */
export interface ReplicaView extends ClusterView { apply(data: ViewData): void }

export function createReplicaView(initial?: ViewData): ReplicaView {
  const holder = new IndexHolder();
  if (initial) holder.swap(initial);
  return {
    async start() { /* fed from outside */ },
    async stop() { /* nothing held */ },
    current: () => holder.index,
    get generation() { return holder.generation; },
    onChange: (cb) => holder.onChange(cb),
    data: () => holder.raw,
    apply: (data) => holder.swap(data),
  };
}
