/**
 * The node agent: registers this host in the cluster store under a lease,
 * leases its pod subnet, makes its VTEP and pod bridge, and keeps the overlay
 * peers (routes, neighbours, FDB) converged with the store by watching it.
 *
 * Reconcile is level-triggered and idempotent: every pass reads the kernel,
 * diffs against the desired state and applies only the difference. Events
 * only mark the state dirty; one pass at a time drains them, so a burst of
 * joins costs one or two passes, not one per event.
 *
 * Restart vs decommission: `stop()` leaves everything in place (kernel state,
 * node record, subnet lease), so pods keep talking while the agent restarts
 * and a new agent within the lease TTL changes nothing. If it never comes
 * back, the lease expires and every peer removes this node. `stop({ leave:
 * true })` is the decommission: revoke the lease (node record and subnet go at
 * once, peers converge immediately), remove the VTEP and the state file.
 */
import { applyEgressMasq, removeEgressMasq } from './egress-masq';
import { keys } from '../store/keys';
import type { NodeRecord } from '../store/records';
import type { Lease, Store, Watch } from '../store/types';
import type { Netlink } from '../cni/netlink/socket';
import { MeshworkError, withContext } from '../lib/errors';
import type { AgentConfig } from './config';
import { planSize, diff } from './diff';
import { ensureHost, removeVtep, type HostState } from './host';
import { acquireInstanceLock, type InstanceLock } from './instance-lock';
import { applyPlan, readOverlay } from './kernel';
import type { Logger } from './logger';
import { createAgentMetrics, type AgentMetrics } from './metrics';
import { readNodeState, removeNodeState, writeNodeState } from './node-state';
import { desiredState, peersOf } from './peers';
import { parseNodeRecord } from './records';
import { claimSubnet } from './subnets';
import { parseNet, type Net } from './subnet-math';

export interface AgentDeps {
  store: Store;
  /** rtnetlink socket of the host namespace the agent manages. */
  netlink: Netlink;
  /** Path of that namespace when it is not the agent's own (nft runs there). */
  netnsPath?: string;
  logger: Logger;
  metrics?: AgentMetrics;
}

export interface AgentStatus {
  registered: boolean;
  subnets: string[];
  vtepMac?: string;
  nodes: number;
  peers: number;
  reconciles: number;
  lastError?: string;
}

export interface Agent {
  start(): Promise<void>;
  /** Restart semantics by default; `leave: true` decommissions this node (see top of file). */
  stop(opts?: { leave?: boolean }): Promise<void>;
  /** Runs one reconcile pass now (and waits for it). */
  reconcileNow(): Promise<void>;
  status(): AgentStatus;
  /** Resolves once the first reconcile pass after start has completed. */
  readonly ready: Promise<void>;
}

export class NodeNameConflictError extends MeshworkError {
  constructor(node: string, other: string) {
    super('ENODE_CONFLICT', `node name ${node} is registered by a live agent with underlay ${other}: pick another --node or stop that agent`);
  }
}

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 10_000;

export function createAgent(cfg: AgentConfig, deps: AgentDeps): Agent {
  const { store, netlink: nl, logger: log } = deps;
  const m = deps.metrics ?? createAgentMetrics();
  const clusters: Net[] = cfg.clusterCidrs.map((c) => parseNet(c));

  const nodes = new Map<string, NodeRecord>();
  let lease: Lease | undefined;
  let instance: InstanceLock | undefined;
  let host: HostState | undefined;
  let subnets: string[] = [];
  let watch: Watch | undefined;
  let resyncTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  let dirty = false;
  let hostDirty = false;
  let running: Promise<void> | undefined;
  let failures = 0;
  let peersProgrammed = 0;
  let reconciles = 0;
  let lastError: string | undefined;
  let registering: Promise<void> | undefined;
  let resolveReady!: () => void;
  // One netlink socket, one request stream: dumps must not interleave.
  let kernelQueue: Promise<unknown> = Promise.resolve();
  const withKernel = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = kernelQueue.then(fn, fn);
    kernelQueue = run.catch(() => {});
    return run;
  };
  const ready = new Promise<void>((r) => (resolveReady = r));

  const hostSpec = () => ({
    node: cfg.node, network: cfg.network, underlay: cfg.underlay, vxlanName: cfg.vxlanName, vni: cfg.vni, port: cfg.port,
    bridgeName: cfg.bridgeName, subnets, clusters, mtu: cfg.mtu, udpCsum: cfg.udpCsum,
  });

  const record = (): NodeRecord => ({
    name: cfg.node,
    underlay: cfg.underlay,
    vtepMac: host?.vtepMac,
    podSubnets: { [cfg.network]: subnets },
    ...(cfg.dns ? { dns: cfg.dns } : {}),
    ...(Object.keys(cfg.labels).length ? { labels: cfg.labels } : {}),
  });

  /** Lease, subnets, devices, state file, node record: in that order, so peers never see a half-made node. */
  async function register(): Promise<void> {
    const existing = await store.get(keys.node(cfg.node));
    const prev = existing ? parseNodeRecord(existing.value) : undefined;
    if (prev?.ok && prev.value.underlay !== cfg.underlay) throw new NodeNameConflictError(cfg.node, prev.value.underlay);
    // Subnets we had: from our state file (survives store data loss), then from a record still alive.
    const remembered = [
      ...(readNodeState(cfg.stateDir, cfg.network)?.subnets ?? []),
      ...(prev?.ok ? prev.value.podSubnets?.[cfg.network] ?? [] : []),
    ];
    const l = await store.grantLease(cfg.leaseTtlSeconds);
    l.onLost((err) => {
      if (stopped || lease !== l) return;
      m.errors.inc({ stage: 'lease' });
      log.warn('node lease lost: registering again', { err });
      scheduleRegister();
    });
    const claimed: string[] = [];
    for (const c of clusters) {
      claimed.push(await claimSubnet({
        store, network: cfg.network, cluster: c, subnetLen: cfg.subnetLen[c.family], node: cfg.node, leaseId: l.id, remembered,
      }));
    }
    if (subnets.length && claimed.join() !== subnets.join()) log.warn('pod subnet changed (ours was taken while we were away)', { from: subnets, to: claimed });
    subnets = claimed;
    host = await withKernel(() => ensureHost(nl, hostSpec()));
    if (cfg.ipMasq) await applyEgressMasq(cfg.network, subnets, cfg.clusterCidrs, deps.netnsPath);
    writeNodeState(cfg.stateDir, {
      version: 1, network: cfg.network, node: cfg.node, bridge: cfg.bridgeName, vxlan: cfg.vxlanName, mtu: host.mtu,
      clusterCidrs: cfg.clusterCidrs, subnets, gateways: host.gateways,
    });
    const old = lease;
    lease = l;
    await store.put(keys.node(cfg.node), JSON.stringify(record()), { lease: l.id });
    m.registrations.inc();
    log.info('node registered', { node: cfg.node, subnets, vtepMac: host.vtepMac, mtu: host.mtu, lease: l.id });
    // A superseded lease (lost, or from before) must not take our keys with it.
    if (old && old !== l) old.revoke().catch(() => { /* already gone */ });
  }

  function scheduleRegister(): void {
    if (stopped || registering) return;
    registering = (async () => {
      for (let attempt = 0; !stopped; attempt++) {
        try { await register(); break; } catch (err) {
          m.errors.inc({ stage: 'register' });
          lastError = (err as Error).message;
          log.error('register failed; retrying', { err, attempt });
          await sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt));
        }
      }
    })().finally(() => { registering = undefined; kick(); });
  }

  const sleep = (ms: number) => new Promise<void>((r) => { retryTimer = setTimeout(r, ms); });

  function applyEvent(key: string, value: string | undefined): void {
    const name = key.slice(keys.nodes().length);
    if (value === undefined) {
      nodes.delete(name);
      // Our own record vanished while we live (lease expired during a store outage).
      if (name === cfg.node && !stopped) { log.warn('own node record deleted: registering again'); scheduleRegister(); }
      return;
    }
    const p = parseNodeRecord(value);
    if (!p.ok) { log.warn('ignoring malformed node record', { key, reason: p.reason }); nodes.delete(name); return; }
    nodes.set(name, p.value);
  }

  async function listAndWatch(): Promise<void> {
    const listing = await store.list(keys.nodes());
    nodes.clear();
    for (const kv of listing.items) applyEvent(kv.key, kv.value);
    const w = await store.watch(keys.nodes(), (ev) => {
      applyEvent(ev.type === 'put' ? ev.kv.key : ev.key, ev.type === 'put' ? ev.kv.value : undefined);
      kick();
    }, {
      fromRevision: listing.revision + 1,
      onError: (err) => {
        if (stopped) return;
        m.errors.inc({ stage: 'watch' });
        log.warn('node watch broke: listing again', { err });
        void w.close().catch(() => {}).then(() => rewatch());
      },
    });
    watch = w;
  }

  async function rewatch(): Promise<void> {
    for (let attempt = 0; !stopped; attempt++) {
      try { await listAndWatch(); kick(); return; } catch (err) {
        m.errors.inc({ stage: 'watch' });
        log.error('watch failed; retrying', { err, attempt });
        await sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt));
      }
    }
  }

  async function reconcileOnce(): Promise<void> {
    if (!host) return;
    const end = m.reconcileSeconds.startTimer();
    try {
      if (hostDirty) {
        hostDirty = false;
        host = await withKernel(() => ensureHost(nl, hostSpec()));
      }
      const { peers, skipped } = peersOf([...nodes.values()], cfg.node, cfg.network, clusters);
      for (const s of skipped) log.warn('skipping peer', { ...s });
      const want = desiredState(peers);
      const vx = host.vxlanIndex;
      const have = await withKernel(() => readOverlay(nl, vx, clusters));
      const plan = diff(have, want);
      if (planSize(plan) > 0) {
        const c = await withKernel(() => applyPlan(nl, vx, plan));
        m.changes.inc({ op: 'add' }, c.added);
        m.changes.inc({ op: 'remove' }, c.removed);
        log.info('overlay converged', { peers: peers.map((p) => p.node), added: c.added, removed: c.removed });
      }
      peersProgrammed = peers.length;
      m.peers.set(peers.length);
      m.nodes.set(nodes.size);
    } finally {
      end();
      m.reconciles.inc();
      reconciles++;
    }
  }

  function kick(): void {
    dirty = true;
    if (running || stopped) return;
    running = (async () => {
      while (dirty && !stopped) {
        dirty = false;
        try {
          await reconcileOnce();
          failures = 0;
          lastError = undefined;
          if (host) resolveReady();
        } catch (err) {
          failures++;
          lastError = (err as Error).message;
          m.errors.inc({ stage: 'reconcile' });
          log.error('reconcile failed; retrying', { err, failures });
          hostDirty = true; // the device may be gone: re-make it on the next pass
          clearTimeout(retryTimer);
          if (!stopped) retryTimer = setTimeout(kick, Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (failures - 1)));
        }
      }
    })().finally(() => { running = undefined; });
  }

  return {
    ready,
    async start() {
      try {
        // First: a twin agent must not touch the store or the kernel (see instance-lock.ts).
        instance = await acquireInstanceLock(cfg.network, cfg.node, deps.netnsPath);
        await register();
        await listAndWatch();
      } catch (err) {
        await instance?.release();
        instance = undefined;
        throw withContext(`agent ${cfg.node}`, err);
      }
      kick();
      resyncTimer = setInterval(() => { hostDirty = true; kick(); }, cfg.resyncSeconds * 1000);
    },
    async stop(opts = {}) {
      if (stopped) return;
      stopped = true;
      clearInterval(resyncTimer);
      clearTimeout(retryTimer);
      await watch?.close().catch(() => {});
      await running;
      await registering;
      if (opts.leave) {
        // Decommission: revoking the lease deletes our node record and subnet leases.
        await lease?.revoke().catch((err) => log.warn('lease revoke failed', { err }));
        await withKernel(() => removeVtep(nl, cfg.vxlanName)).catch((err) => log.warn('VTEP removal failed', { err }));
        await removeEgressMasq(cfg.network, deps.netnsPath).catch((err) => log.warn('egress masquerade removal failed', { err }));
        removeNodeState(cfg.stateDir, cfg.network);
        log.info('node left the cluster', { node: cfg.node });
      }
      await instance?.release();
    },
    async reconcileNow() {
      await running;
      dirty = true;
      kick();
      await running;
    },
    status: () => ({
      registered: !!host && !!lease, subnets, vtepMac: host?.vtepMac, nodes: nodes.size, peers: peersProgrammed, reconciles, lastError,
    }),
  };
}
