/**
 * Service VIPs without a sidecar: the host load-balances every ClusterIP
 * service in nftables, as kube-proxy's nftables mode does.
 *
 *   const vips = createServiceVips({ store, registry, logger });
 *   await vips.start();        // list + watch Services and endpoints, first sync
 *   await vips.reconcileNow(); // tests: one pass now, throws if nft refused it
 *   await vips.stop();         // stop watching, remove the table (decommission)
 *   await vips.stop({ keepTable: true }); // a restart: VIPs keep working meanwhile
 *
 * Deps:
 *   store       the cluster Store; Services at keys.policies('Service'),
 *               EndpointRecords at keys.endpoints()
 *   netnsPath   the host namespace to program (default: our own); nft is
 *               spawned inside it through lib/netns.ts
 *   nft         replaces the nft runner (tests); default runs `nft -f -`
 *   conntrack   replaces the UDP conntrack cleaner (tests); default runs
 *               `conntrack -D` (conntrack-tools; without it, a UDP socket
 *               keeps reaching a removed endpoint until its entry idles out)
 *   logger      agent/logger.ts Logger (default silent)
 *   registry    prom-client Registry for the meshwork_vips_* metrics
 *   table, masqueradeMark, sameLinkMasquerade ('auto': on unless
 *   br_netfilter passes bridged traffic through netfilter in that namespace),
 *   debounceMs (coalesces bursts, default 10), resyncIntervalMs (re-applies
 *   the whole table even if unchanged, repairing outside edits; default 5 min).
 *
 * A change in the store is in the kernel within debounce + one nft run.
 * The first pass, a forced resync and the pass after a failure replace the
 * whole table; every other pass sends only the chains and map elements that
 * changed (kube-proxy's partial sync), so one endpoint change costs the same
 * with ten services or ten thousand. A pass with nothing to change runs no nft
 * at all. A failed pass is retried with backoff; the kernel keeps the last good
 * table meanwhile (each nft run applies all or nothing).
 */
import * as fs from 'node:fs';
import type { Registry } from 'prom-client';
import { MeshworkError, withContext } from '../lib/errors';
import { inNetnsSync } from '../lib/netns';
import { keys } from '../store/keys';
import type { Store, Watch, WatchEvent } from '../store/types';
import { nftApply } from '../cni/nft/apply';
import { silentLogger, type Logger } from './logger';
import { buildVipTable, parseVipEndpoint, parseVipService, type VipEndpoint, type VipService, type VipTable } from './service-vips-model';
import { DEFAULT_MASQ_MARK, DEFAULT_TABLE, deleteScript, objectsOf, renderPatch, renderScript, validateRenderOptions, type VipObjects } from './service-vips-render';
import { createVipMetrics, type VipMetrics } from './service-vips-metrics';
import { ConntrackError, conntrackFlusher, staleUdpFlows, type ConntrackFlusher } from './service-vips-conntrack';

export type NftRunner = (script: string) => Promise<void>;

export interface ServiceVipsDeps {
  store: Store;
  netnsPath?: string;
  nft?: NftRunner;
  /** Deletes UDP conntrack entries of endpoints that left a VIP (tests); default runs `conntrack -D`. */
  conntrack?: ConntrackFlusher;
  logger?: Logger;
  registry?: Registry;
  table?: string;
  masqueradeMark?: number;
  sameLinkMasquerade?: boolean | 'auto';
  debounceMs?: number;
  resyncIntervalMs?: number;
}

export interface SyncResult {
  /** False when the rendered ruleset equalled the one in force. */
  applied: boolean;
  table: VipTable;
}

export interface ServiceVips {
  start(): Promise<void>;
  /**
   * Stops watching. Removes the table unless `keepTable`: an agent that is only
   * restarting leaves it in force, so new connections to VIPs keep working
   * until its successor takes over (its first pass replaces the table whole).
   */
  stop(opts?: { keepTable?: boolean }): Promise<void>;
  /** Runs one pass now (after any pass in flight); `force` re-applies an unchanged ruleset. */
  reconcileNow(opts?: { force?: boolean }): Promise<SyncResult>;
}

export class ServiceVipsError extends MeshworkError {
  constructor(message: string, options?: { cause?: unknown }) { super('EVIPS', message, options); }
}

const SERVICES = keys.policies('Service');
const ENDPOINTS = keys.endpoints();
const MAX_BACKOFF_MS = 30_000;

/**
 * Removes the VIP table (absent is fine): what a controller's stop does, and
 * what a leaving agent does for a table an earlier run left.
 */
export async function removeVipTable(nft: NftRunner = (script) => nftApply(script), table = DEFAULT_TABLE): Promise<void> {
  try {
    await nft(deleteScript(table));
  } catch (err) {
    throw new ServiceVipsError(`service VIPs: removing table ${table} failed: ${(err as Error).message}`, { cause: err });
  }
}

export function createServiceVips(deps: ServiceVipsDeps): ServiceVips {
  const log = deps.logger ?? silentLogger;
  const table = deps.table ?? DEFAULT_TABLE;
  const mark = deps.masqueradeMark ?? DEFAULT_MASQ_MARK;
  const sameLinkOpt = deps.sameLinkMasquerade ?? 'auto';
  validateRenderOptions({ table, masqueradeMark: mark, sameLinkMasquerade: false });
  const nft: NftRunner = deps.nft ?? ((script) => nftApply(script, { netns: deps.netnsPath }));
  const flush: ConntrackFlusher = deps.conntrack ?? conntrackFlusher({ netnsPath: deps.netnsPath });
  let conntrackMissingReported = false;
  const metrics: VipMetrics | undefined = deps.registry ? createVipMetrics(deps.registry) : undefined;
  const debounceMs = deps.debounceMs ?? 10;

  // A Service key maps to undefined when it is known but gets no VIP (headless, ExternalName).
  const services = new Map<string, VipService | undefined>();
  const endpoints = new Map<string, VipEndpoint>();
  const watches: Watch[] = [];
  // What the kernel holds, as far as we know: undefined until the first full sync succeeds and after any failure.
  let kernel: { objects: VipObjects; sameLink: boolean } | undefined;
  // The last table the kernel accepted, to know which UDP endpoints left.
  let lastTable: VipTable | undefined;
  // Bumped by every store event; a pass at an unchanged generation has nothing to rebuild.
  let generation = 0;
  let lastPass: { generation: number; result: SyncResult } | undefined;
  let chain: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let resync: NodeJS.Timeout | undefined;
  let failures = 0;
  let started = false;
  let stopped = false;
  const reported = new Set<string>();

  const put = (key: string, value: string): void => {
    try {
      if (key.startsWith(SERVICES)) services.set(key, parseVipService(key, value));
      else endpoints.set(key, parseVipEndpoint(key, value));
      reported.delete(key);
    } catch (err) {
      // Skip the bad record (and forget an older good one under that key): everyone else keeps working.
      services.delete(key);
      endpoints.delete(key);
      if (!reported.has(key)) { reported.add(key); log.warn('vips: skipping record', { key, error: (err as Error).message }); }
    }
  };
  const onEvent = (ev: WatchEvent): void => {
    generation++;
    if (ev.type === 'put') put(ev.kv.key, ev.kv.value);
    else { services.delete(ev.key); endpoints.delete(ev.key); reported.delete(ev.key); }
    schedule(debounceMs);
  };

  const follow = async (prefix: string): Promise<void> => {
    const listed = await deps.store.list(prefix);
    for (const m of [services, endpoints] as Map<string, unknown>[]) for (const k of [...m.keys()]) if (k.startsWith(prefix)) m.delete(k);
    for (const kv of listed.items) put(kv.key, kv.value);
    generation++;
    const w: Watch = await deps.store.watch(prefix, onEvent, {
      fromRevision: listed.revision + 1,
      onError: (err) => {
        // History compacted or the stream broke: list again from scratch.
        if (stopped) return;
        log.warn('vips: watch lost, re-listing', { prefix, error: err.message });
        void w.close().catch(() => undefined).then(async () => {
          const i = watches.indexOf(w);
          if (i >= 0) watches.splice(i, 1);
          await relist(prefix, 0);
        });
      },
    });
    if (stopped) { await w.close(); return; }
    watches.push(w);
  };
  const relist = async (prefix: string, attempt: number): Promise<void> => {
    if (stopped) return;
    try {
      await follow(prefix);
      schedule(0);
    } catch (err) {
      log.error('vips: re-list failed', { prefix, error: (err as Error).message });
      setTimeout(() => void relist(prefix, attempt + 1), Math.min(MAX_BACKOFF_MS, 200 * 2 ** attempt)).unref();
    }
  };

  const sameLink = (): boolean => {
    if (sameLinkOpt !== 'auto') return sameLinkOpt;
    // With br_netfilter on for both families, bridged replies meet conntrack and are un-NATed already.
    const read = () => ['iptables', 'ip6tables'].map((f) => {
      try { return fs.readFileSync(`/proc/sys/net/bridge/bridge-nf-call-${f}`, 'utf8').trim(); } catch { return '0'; }
    });
    const vals = deps.netnsPath ? inNetnsSync(deps.netnsPath, read) : read();
    return !vals.every((v) => v === '1');
  };

  const pass = async (force: boolean): Promise<SyncResult> => {
    const endTimer = metrics?.syncSeconds.startTimer();
    metrics?.syncs.inc();
    try {
      if (!force && lastPass && lastPass.generation === generation && kernel) {
        return { applied: false, table: lastPass.result.table };
      }
      const built = generation;
      const { table: t, conflicts } = buildVipTable([...services.values()].filter((s): s is VipService => !!s), endpoints.values());
      for (const c of conflicts) log.warn('vips: address claimed twice', { vip: c.id, kept: c.owner, ignored: c.loser });
      const opts = { table, masqueradeMark: mark, sameLinkMasquerade: sameLink() };
      const objects = objectsOf(t, opts);
      // A full replace when the kernel state is unknown or the fixed chains change; otherwise only the difference.
      const full = force || !kernel || kernel.sameLink !== opts.sameLinkMasquerade;
      const script = full ? renderScript(t, opts) : renderPatch(kernel!.objects, objects, opts);
      let applied = false;
      if (script) {
        kernel = undefined;
        await nft(script);
        kernel = { objects, sameLink: opts.sameLinkMasquerade };
        applied = true;
        const stale = lastTable ? staleUdpFlows(lastTable, t) : [];
        lastTable = t;
        if (stale.length) await flushStale(stale);
      }
      failures = 0;
      lastPass = { generation: built, result: { applied, table: t } };
      metrics?.services.set(new Set(t.entries.map((e) => e.service)).size);
      metrics?.endpoints.set(t.entries.reduce((n, e) => n + e.backends.length, 0));
      metrics?.noEndpoints.set(t.entries.filter((e) => e.backends.length === 0).length);
      return { applied, table: t };
    } catch (err) {
      metrics?.syncErrors.inc();
      throw new ServiceVipsError(`service VIPs: sync of table ${table} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      endTimer?.();
    }
  };

  // Best effort: the table is right either way; a stale UDP flow only lasts until it idles out.
  const flushStale = async (flows: Parameters<ConntrackFlusher>[0]): Promise<void> => {
    try {
      await flush(flows);
    } catch (err) {
      if (err instanceof ConntrackError && err.missing) {
        if (!conntrackMissingReported) log.warn('vips: conntrack not installed; UDP flows to removed endpoints last until they idle out');
        conntrackMissingReported = true;
      } else {
        log.warn('vips: clearing UDP conntrack entries failed', { error: (err as Error).message });
      }
    }
  };

  // Passes run one at a time, in order: a pass queued behind another sees the newest state.
  const enqueue = (force: boolean): Promise<SyncResult> => {
    const p = chain.then(() => pass(force));
    chain = p.catch(() => undefined);
    return p;
  };

  function schedule(delayMs: number): void {
    if (stopped || !started || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      enqueue(false).catch((err: Error) => {
        failures++;
        log.error('vips: sync failed, will retry', { error: err.message, attempt: failures });
        schedule(Math.min(MAX_BACKOFF_MS, 250 * 2 ** (failures - 1)));
      });
    }, delayMs);
  }

  const closeWatches = () => Promise.all(watches.splice(0).map((w) => w.close().catch(() => undefined)));

  return {
    async start() {
      if (started) throw new ServiceVipsError('service VIPs already started');
      started = true;
      try {
        await follow(SERVICES);
        await follow(ENDPOINTS);
        await enqueue(false);
      } catch (err) {
        stopped = true;
        await closeWatches();
        throw withContext('service VIPs: start', err);
      }
      const every = deps.resyncIntervalMs ?? 300_000;
      if (every > 0) {
        resync = setInterval(() => {
          enqueue(true).catch((err: Error) => { log.error('vips: periodic resync failed', { error: err.message }); schedule(1000); });
        }, every);
        resync.unref();
      }
    },
    async stop(opts = {}) {
      if (!started) { stopped = true; return; }
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      if (resync) clearInterval(resync);
      await closeWatches();
      await chain;
      if (opts.keepTable) return;
      await removeVipTable(nft, table);
      kernel = undefined;
    },
    reconcileNow(opts = {}) {
      if (stopped) return Promise.reject(new ServiceVipsError('service VIPs stopped'));
      return enqueue(opts.force ?? false);
    },
  };
}
