/**
 * Where the sidecar's snapshots come from. Services and TrafficPolicies: the
 * policies watcher (policies/watch.ts), from a YAML file or the cluster store,
 * which validates fully and hands out whole snapshots. Endpoints: the store's
 * endpoint records, or a static list in a local file for simple runs. The two
 * are combined here into one Snapshot, emitted whole each time either changes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { MeshworkError } from '../lib/errors';
import { keys } from '../store/keys';
import type { EndpointRecord } from '../store/records';
import type { Store, Watch } from '../store/types';
import { createPolicyWatcher, type PolicySnapshot, type PolicyWatcherOptions } from '../policies/watch';
import type { Snapshot } from './catalog';

export interface SnapshotSource {
  start(onSnapshot: (s: Snapshot) => void, onError: (e: Error) => void): Promise<void>;
  stop(): Promise<void>;
}

/** A stream of endpoint lists. */
export interface EndpointSource {
  start(onEndpoints: (eps: EndpointRecord[]) => void, onError: (e: Error) => void): Promise<void>;
  stop(): Promise<void>;
}

export class SidecarConfigError extends MeshworkError {
  constructor(where: string, message: string) { super('ESIDECARCONFIG', `${where}: ${message}`); }
}

/**
 * A static endpoint file: a list (or `{ endpoints: [...] }`) of
 * `{ ips: [...], labels: {...}, pod?, namespace?, ready? }`; each problem names its place.
 */
export function parseEndpoints(text: string, where: string): EndpointRecord[] {
  let doc: unknown;
  try { doc = where.endsWith('.json') ? JSON.parse(text) : parseYaml(text); } catch (err) {
    throw new SidecarConfigError(where, `not valid ${where.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  const list = Array.isArray(doc) ? doc : (doc as { endpoints?: unknown } | null)?.endpoints;
  if (!Array.isArray(list)) throw new SidecarConfigError(where, 'expected a list of endpoints (or an object with `endpoints:`)');
  return list.map((e, i) => endpointOf(e, `${where}: endpoints[${i}]`));
}

function endpointOf(v: unknown, where: string): EndpointRecord {
  const o = v as Partial<EndpointRecord>;
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new SidecarConfigError(where, 'expected an object');
  if (!Array.isArray(o.ips) || o.ips.length === 0 || !o.ips.every((a) => typeof a === 'string')) throw new SidecarConfigError(where, 'ips: expected a non-empty list of addresses');
  if (o.labels !== undefined && (typeof o.labels !== 'object' || Object.values(o.labels).some((x) => typeof x !== 'string'))) throw new SidecarConfigError(where, 'labels: expected a map of strings');
  if (o.ready !== undefined && typeof o.ready !== 'boolean') throw new SidecarConfigError(where, 'ready: expected true or false');
  return {
    network: o.network ?? 'static', containerId: o.containerId ?? o.pod ?? o.ips[0], ifname: o.ifname ?? 'eth0',
    namespace: o.namespace ?? 'default', pod: o.pod ?? o.ips[0], node: o.node ?? '', ips: o.ips,
    labels: o.labels ?? {}, ready: o.ready ?? true,
  };
}

/** A local endpoint file, re-read when it changes (editors that replace the file included). */
export function endpointFileSource(file: string): EndpointSource {
  let watcher: fs.FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  let last = '';
  return {
    async start(onEndpoints, onError) {
      const load = (initial: boolean) => {
        try {
          const text = fs.readFileSync(file, 'utf8');
          if (text === last) return;
          const eps = parseEndpoints(text, file);
          last = text;
          onEndpoints(eps);
        } catch (err) {
          const e = err instanceof SidecarConfigError ? err : new SidecarConfigError(file, `cannot read: ${(err as Error).message}`);
          if (initial) throw e;
          onError(e);
        }
      };
      load(true);
      watcher = fs.watch(path.dirname(path.resolve(file)), (_ev, name) => {
        if (name !== path.basename(file)) return;
        clearTimeout(timer);
        timer = setTimeout(() => load(false), 20);
      });
    },
    async stop() { clearTimeout(timer); watcher?.close(); },
  };
}

/** Endpoint records under /meshwork/endpoints/, listed then watched. */
export function storeEndpointSource(store: Store): EndpointSource {
  let watch: Watch | undefined;
  let timer: NodeJS.Timeout | undefined;
  const records = new Map<string, EndpointRecord>();
  return {
    async start(onEndpoints, onError) {
      const set = (key: string, value: string) => {
        try { records.set(key, JSON.parse(value) as EndpointRecord); } catch (err) {
          onError(new SidecarConfigError(`store ${key}`, `not an endpoint record: ${(err as Error).message}`));
        }
      };
      const l = await store.list(keys.endpoints());
      for (const kv of l.items) set(kv.key, kv.value);
      watch = await store.watch(keys.endpoints(), (ev) => {
        if (ev.type === 'put') set(ev.kv.key, ev.kv.value); else records.delete(ev.key);
        // A burst of changes (a pod's ADD) becomes one update.
        clearTimeout(timer);
        timer = setTimeout(() => onEndpoints([...records.values()]), 10);
      }, { fromRevision: l.revision + 1, onError });
      onEndpoints([...records.values()]);
    },
    async stop() { clearTimeout(timer); await watch?.close(); },
  };
}

/** Policies from the policies watcher (file or store) plus endpoints from `endpoints`. */
export function combinedSource(policies: PolicyWatcherOptions, endpoints: EndpointSource): SnapshotSource {
  let watcher: ReturnType<typeof createPolicyWatcher> | undefined;
  let unsubscribe: (() => void) | undefined;
  return {
    async start(onSnapshot, onError) {
      let pol: PolicySnapshot | undefined;
      let eps: EndpointRecord[] | undefined;
      const emit = () => {
        if (!pol || !eps) return;
        onSnapshot({ services: [...pol.services.values()], policies: [...pol.trafficPolicies.values()], endpoints: eps });
      };
      watcher = createPolicyWatcher({ ...policies, onError });
      pol = await watcher.start();
      unsubscribe = watcher.subscribe((s) => { pol = s; emit(); });
      await endpoints.start((e) => { eps = e; emit(); }, onError);
    },
    async stop() {
      unsubscribe?.();
      await watcher?.stop();
      await endpoints.stop();
    },
  };
}

/** A snapshot held in memory and replaced with `set` (embedding, tests). */
export function memorySource(initial: Snapshot): SnapshotSource & { set(s: Snapshot): void } {
  let push: ((s: Snapshot) => void) | undefined;
  let snap = initial;
  return {
    async start(onSnapshot) { push = onSnapshot; onSnapshot(snap); },
    async stop() { push = undefined; },
    set(s) { snap = s; push?.(s); },
  };
}
