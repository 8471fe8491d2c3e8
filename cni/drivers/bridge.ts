/**
 * The bridge driver: containers on one Linux bridge in the host namespace,
 * each through a veth pair whose container end is born inside the
 * container's namespace under CNI_IFNAME. Field names follow the reference
 * bridge plugin (bridge, isGateway, isDefaultGateway, ipMasq, hairpinMode,
 * mtu, promiscMode; portMappings from runtimeConfig). Masquerade, port
 * mappings and isolation live in one nft table per network.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { releaseAfterFailedAdd, transaction, type AttachmentContext, type BaseContext, type Deferrer, type Driver, type GcContext } from './driver';
import { attachmentKey, hostVethName, HOST_VETH_RE, NetworkState, type AttachmentRecord } from './bridge-state';
import { field, show } from '../config';
import { CniCode, CniError, ConfigError, UnsupportedFieldError, type NetConf, type Result, type ResultRoute } from '../types';
import { openNetlink, withNetlink, netnsFd, ExistsError, NotFoundError, type Netlink } from '../netlink/socket';
import {
  linkAddBridge, linkAddVeth, linkByName, linkDel, linkDelByName, linkList, linkSetAlias, linkSetBridgePort, linkSetGroup,
  linkSetMaster, linkSetPromisc, linkSetUp, type Link,
} from '../netlink/link';
import { addrAdd, addrList } from '../netlink/addr';
import { configureContainerLink } from './container-link';
import { routeList } from '../netlink/route';
import { formatIp, networkOf, parseCidr, parseIp } from '../netlink/ip';
import { MESHWORK_BRIDGE_GROUP, deleteScript, replaceScript, tableName } from '../nft/rules';
import { nftApply, nftTableExists } from '../nft/apply';
import { MeshworkError } from '../../lib/errors';
import { inNetnsSync, NetnsNotFoundError } from '../../lib/netns';
import type { IpamResult } from '../ipam/types';

export const DEFAULT_STATE_DIR = '/run/meshwork/cni';

export interface BridgeConfig {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  ipMasq: boolean;
  hairpinMode: boolean;
  promiscMode: boolean;
  mtu?: number;
  /** Drop traffic between this and other meshwork bridge networks (default true). */
  isolation: boolean;
  /** Where attachment records and locks live (tests point it at their own dir). */
  stateDir: string;
}

const IFNAME_RE = /^[^\s/:]{1,15}$/;

/** Default bridge name: stable per network, short enough for IFNAMSIZ. */
export const defaultBridgeName = (network: string): string =>
  `mwbr-${createHash('sha256').update(network).digest('hex').slice(0, 8)}`;

export function loadBridgeConfig(conf: NetConf): BridgeConfig {
  const raw = conf.raw;
  const bridge = field.str(raw, 'bridge') ?? defaultBridgeName(conf.name);
  if (!IFNAME_RE.test(bridge) || bridge === '.' || bridge === '..') throw new ConfigError('bridge', `${show(bridge)} is not a valid interface name (1-15 characters, no "/", ":" or spaces)`);
  const isDefaultGateway = field.bool(raw, 'isDefaultGateway', false);
  // A default gateway must be a gateway, as in the reference plugin.
  const isGateway = field.bool(raw, 'isGateway', false) || isDefaultGateway;
  for (const k of ['vlan', 'vlanTrunk']) {
    if (raw[k] !== undefined && raw[k] !== null && raw[k] !== 0) throw new UnsupportedFieldError(k, raw[k], 'VLANs are not supported by the meshwork bridge driver');
  }
  if (raw.macspoofchk === true) throw new UnsupportedFieldError('macspoofchk', true, 'not supported by the meshwork bridge driver');
  const stateDir = field.str(raw, 'stateDir', DEFAULT_STATE_DIR)!;
  if (!stateDir.startsWith('/')) throw new ConfigError('stateDir', `expected an absolute path, got ${show(stateDir)}`);
  return {
    bridge,
    isGateway,
    isDefaultGateway,
    ipMasq: field.bool(raw, 'ipMasq', false),
    hairpinMode: field.bool(raw, 'hairpinMode', false),
    promiscMode: field.bool(raw, 'promiscMode', false),
    mtu: field.int(raw, 'mtu', 68, 65535),
    isolation: field.bool(raw, 'isolation', true),
    stateDir,
  };
}

// ---------------------------------------------------------------------------
// Host-side helpers

/** Writes a sysctl of the current namespace if it differs (no-op when already set). */
function ensureSysctl(key: string, value: string): void {
  const file = `/proc/sys/${key.replace(/\./g, '/')}`;
  try {
    if (fs.readFileSync(file, 'utf8').trim() === value) return;
    fs.writeFileSync(file, value);
  } catch (err) {
    throw new MeshworkError('ESYSCTL', `cannot set ${key}=${value}: ${(err as Error).message}`, { cause: err });
  }
}

/** Alias of the bridges meshwork creates: only those are removed with their network's last container. */
const ownerAlias = (network: string) => `meshwork:${network}`;

/** The bridge, created (and marked as ours) if missing. Caller holds the network lock. */
async function ensureBridge(nl: Netlink, cfg: BridgeConfig, network: string): Promise<Link> {
  let created = false;
  let link = await linkByName(nl, cfg.bridge);
  if (!link) {
    try {
      await linkAddBridge(nl, { name: cfg.bridge, mtu: cfg.mtu });
      created = true;
    } catch (err) {
      if (!(err instanceof ExistsError)) throw err; // another network's call made it meanwhile
    }
    link = await linkByName(nl, cfg.bridge);
    if (!link) throw new MeshworkError('EBRIDGE', `bridge ${cfg.bridge} vanished while being created`);
    if (created) await linkSetAlias(nl, link.index, ownerAlias(network));
  }
  if (link.kind !== 'bridge') throw new ConfigError('bridge', `${cfg.bridge} exists and is a ${link.kind ?? 'non-bridge'} device, not a bridge`);
  if (cfg.isolation && link.group !== MESHWORK_BRIDGE_GROUP) await linkSetGroup(nl, link.index, MESHWORK_BRIDGE_GROUP);
  if (cfg.promiscMode && !link.promisc) await linkSetPromisc(nl, link.index, true);
  if (!link.up) await linkSetUp(nl, link.index);
  return link;
}

/** Regenerates the network's nft table from its records, or removes it when nothing needs it. */
async function syncRules(state: NetworkState, conf: NetConf, cfg: BridgeConfig): Promise<void> {
  const recs = state.all();
  const addresses = recs.flatMap((r) => r.addresses);
  const portMaps = recs.flatMap((r) => r.portMappings.flatMap((pm) =>
    r.addresses.map((a) => ({ ...pm, containerIp: formatIp(parseCidr(a)) }))));
  const script = !recs.length || (!cfg.ipMasq && !cfg.isolation && !portMaps.length)
    ? deleteScript(conf.name)
    : replaceScript({ network: conf.name, bridge: cfg.bridge, addresses, ipMasq: cfg.ipMasq, isolate: cfg.isolation, portMaps });
  if (state.appliedRules() === script) return;
  state.setAppliedRules(undefined); // a failed apply must not leave a stale cache
  await nftApply(script);
  state.setAppliedRules(script);
}

/**
 * Forgets one attachment (under the network lock): drops its record, then
 * either re-renders the rules or, for the last one, removes the table and
 * the bridge if meshwork created it.
 */
async function forgetAttachment(state: NetworkState, conf: NetConf, cfg: BridgeConfig, containerId: string, ifname: string, defer?: Deferrer): Promise<void> {
  await state.lock(async () => {
    state.remove(containerId, ifname);
    if (!defer || state.all().length) {
      await teardownOrSync(state, conf, cfg);
      return;
    }
    // Resident daemon: the network's teardown (bridge and nft table removal,
    // ~50 ms of kernel work) waits out a grace period; an ADD meanwhile
    // cancels it, and if one slips in anyway the locked re-check keeps the network.
    defer.later(teardownKey(cfg, conf), () => state.lock(() => teardownOrSync(state, conf, cfg)));
  });
}

const teardownKey = (cfg: BridgeConfig, conf: NetConf) => `bridge-teardown:${cfg.stateDir}:${conf.name}`;

/** Caller holds the lock. */
async function teardownOrSync(state: NetworkState, conf: NetConf, cfg: BridgeConfig): Promise<void> {
  if (state.all().length) {
    await syncRules(state, conf, cfg);
    return;
  }
  state.setAppliedRules(undefined);
  await nftApply(deleteScript(conf.name));
  await withNetlink(undefined, async (nl) => {
    const br = await linkByName(nl, cfg.bridge);
    // Only a bridge we made, and only empty: a port means someone else uses it after all.
    if (br && br.kind === 'bridge' && br.alias === ownerAlias(conf.name) && !(await linkList(nl)).some((l) => l.master === br.index)) {
      try { await linkDel(nl, br.index); } catch (err) { if (!(err instanceof NotFoundError)) throw err; }
    }
  });
  state.clearNetwork();
}

// ---------------------------------------------------------------------------
// Addresses and routes from the IPAM result

interface Plan {
  ips: Array<{ address: string; gateway?: string; family: 4 | 6 }>;
  routes: ResultRoute[];
}

function plan(ipam: IpamResult, cfg: BridgeConfig): Plan {
  const ips = ipam.ips.map((ip, i) => {
    let c;
    try { c = parseCidr(ip.address); } catch { throw new CniError(CniCode.invalidConfig, `IPAM returned an invalid address ips[${i}]: ${show(ip.address)}`); }
    let gateway = ip.gateway;
    if (gateway !== undefined) {
      let g;
      try { g = parseIp(gateway); } catch { throw new CniError(CniCode.invalidConfig, `IPAM returned an invalid gateway ips[${i}]: ${show(gateway)}`); }
      if (g.family !== c.family) throw new CniError(CniCode.invalidConfig, `IPAM gateway ${gateway} is not of the family of ${ip.address}`);
    } else if (cfg.isGateway) {
      // No gateway given: the first address of the subnet, as the reference plugin does.
      const net = networkOf(c);
      net.bytes[net.bytes.length - 1] += 1;
      gateway = formatIp(net);
    }
    if (gateway !== undefined && formatIp(parseIp(gateway)) === formatIp(c)) {
      throw new CniError(CniCode.invalidConfig, `container address ${ip.address} is the gateway address`);
    }
    return { address: ip.address, gateway, family: c.family };
  });
  const routes: ResultRoute[] = [];
  const seen = new Set<string>();
  const push = (r: ResultRoute) => {
    const d = `${r.dst}`;
    if (!seen.has(d)) { seen.add(d); routes.push(r); }
  };
  if (cfg.isDefaultGateway) {
    for (const fam of [4, 6] as const) {
      const gw = ips.find((i) => i.family === fam && i.gateway)?.gateway;
      if (gw) push({ dst: fam === 4 ? '0.0.0.0/0' : '::/0', gw });
    }
  }
  for (const r of ipam.routes ?? []) {
    let d;
    try { d = parseCidr(r.dst); } catch { throw new CniError(CniCode.invalidConfig, `IPAM returned an invalid route dst ${show(r.dst)}`); }
    const dst = `${formatIp(networkOf(d))}/${d.prefix}`;
    push(r.gw ? { dst, gw: r.gw } : { dst });
  }
  return { ips, routes };
}

/** A host port of `wanted` already published by another attachment of the network. */
function publishedPortClash(recs: AttachmentRecord[], wanted: AttachmentRecord['portMappings']): string | undefined {
  for (const w of wanted) {
    for (const r of recs) {
      const other = r.portMappings.find((p) => p.protocol === w.protocol && p.hostPort === w.hostPort && (!p.hostIP || !w.hostIP || p.hostIP === w.hostIP));
      if (other) return `runtimeConfig.portMappings: ${w.protocol} host port ${w.hostPort} is already published by container ${r.containerId}`;
    }
  }
  return undefined;
}

/** Proves CNI_NETNS is a network namespace (entering and leaving it) before anything is changed. */
function requireNetns(netns: string | undefined, code: number): string {
  if (!netns) throw new CniError(CniCode.invalidEnv, 'CNI_NETNS: required');
  try {
    inNetnsSync(netns, () => undefined);
  } catch (err) {
    if (err instanceof NetnsNotFoundError) throw new CniError(code, `CNI_NETNS: network namespace ${netns} does not exist`, undefined, { cause: err });
    if (err instanceof MeshworkError && err.code === 'ENETNS') throw new CniError(CniCode.invalidEnv, `CNI_NETNS: ${err.message}`, undefined, { cause: err });
    throw err;
  }
  return netns;
}

// ---------------------------------------------------------------------------
// Verbs

async function add(ctx: AttachmentContext, cfg: BridgeConfig): Promise<Result> {
  const netns = requireNetns(ctx.netns, CniCode.invalidEnv);
  if (!ctx.ipam.configured) throw new ConfigError('ipam', 'the bridge driver needs an "ipam" section');
  const state = new NetworkState(cfg.stateDir, ctx.conf.name);
  const hostVeth = hostVethName(ctx.containerId, ctx.ifname);
  const record: AttachmentRecord = {
    containerId: ctx.containerId, ifname: ctx.ifname, hostVeth, netns, addresses: [], portMappings: ctx.conf.runtimeConfig.portMappings ?? [],
  };
  const host = openNetlink();
  try {
    return await transaction(async (tx) => {
      // Phase 1, locked: record the attachment before touching the kernel
      // (GC can then find what a killed plugin left), and make the bridge.
      const bridge = await state.lock(async () => {
        if (state.read(ctx.containerId, ctx.ifname)) {
          throw new CniError(CniCode.invalidConfig, `container ${ctx.containerId} already has interface ${ctx.ifname} on network ${ctx.conf.name}; DEL it first`);
        }
        const clash = publishedPortClash(state.all(), record.portMappings);
        if (clash) throw new CniError(CniCode.invalidConfig, clash);
        ctx.defer?.cancel(teardownKey(cfg, ctx.conf));
        state.write(record);
        tx.onUndo('forget the attachment', () => forgetAttachment(state, ctx.conf, cfg, ctx.containerId, ctx.ifname));
        return ensureBridge(host, cfg, ctx.conf.name);
      });

      // Registered before the call: an IPAM that fails half-way (one family of
      // two, an external plugin that dies) must not keep what it took. DEL of
      // nothing is success.
      tx.onUndo('release the IPAM allocation', () => releaseAfterFailedAdd(ctx.ipam));
      const ipamResult = await ctx.ipam.add();
      const p = plan(ipamResult, cfg);
      if (!p.ips.length) throw new CniError(CniCode.invalidConfig, 'IPAM returned no address');

      const fd = netnsFd(netns);
      try {
        await linkAddVeth(host, { name: hostVeth, peerName: ctx.ifname, peerNetnsFd: fd, mtu: cfg.mtu, peerMac: ctx.conf.runtimeConfig.mac });
      } catch (err) {
        if (err instanceof ExistsError) {
          throw new CniError(CniCode.invalidEnv, `CNI_IFNAME: interface ${ctx.ifname} already exists in ${netns} (or host veth ${hostVeth} does)`, undefined, { cause: err });
        }
        throw err;
      } finally {
        fs.closeSync(fd);
      }
      tx.onUndo(`delete veth ${hostVeth}`, () => linkDelByName(host, hostVeth).then(() => undefined));

      const hv = await linkByName(host, hostVeth);
      if (!hv) throw new MeshworkError('ELINK', `host veth ${hostVeth} missing right after creation`);
      await linkSetMaster(host, hv.index, bridge.index);
      if (cfg.hairpinMode) await linkSetBridgePort(host, hv.index, { hairpin: true });
      await linkSetUp(host, hv.index);

      const podLink = await withNetlink(netns, (pod) => configureContainerLink(pod, ctx.ifname, p));

      if (cfg.isGateway) {
        for (const ip of p.ips) {
          if (!ip.gateway) continue;
          const prefix = parseCidr(ip.address).prefix;
          try {
            await addrAdd(host, bridge.index, `${ip.gateway}/${prefix}`, { noDad: true });
          } catch (err) {
            if (!(err instanceof ExistsError)) throw err;
          }
        }
        if (p.ips.some((i) => i.family === 4)) ensureSysctl('net.ipv4.ip_forward', '1');
        if (p.ips.some((i) => i.family === 6)) ensureSysctl('net.ipv6.conf.all.forwarding', '1');
      }

      // Phase 2, locked: publish the addresses and re-render the network's rules.
      await state.lock(async () => {
        state.write({ ...record, addresses: p.ips.map((i) => i.address) });
        await syncRules(state, ctx.conf, cfg);
      });

      const br = (await linkByName(host, cfg.bridge)) ?? bridge;
      const v11 = ctx.version === '1.1.0';
      return {
        interfaces: [
          { name: br.name, mac: br.mac, ...(v11 && br.mtu ? { mtu: br.mtu } : {}) },
          { name: hostVeth, mac: hv.mac, ...(v11 && hv.mtu ? { mtu: hv.mtu } : {}) },
          { name: ctx.ifname, mac: podLink.mac, sandbox: netns, ...(v11 && podLink.mtu ? { mtu: podLink.mtu } : {}) },
        ],
        ips: p.ips.map((i) => ({ address: i.address, gateway: i.gateway, interface: 2 })),
        routes: p.routes,
        dns: ipamResult.dns && Object.keys(ipamResult.dns).length ? ipamResult.dns : ctx.conf.dns,
      };
    });
  } finally {
    host.close();
  }
}

async function del(ctx: AttachmentContext, cfg: BridgeConfig): Promise<void> {
  const state = new NetworkState(cfg.stateDir, ctx.conf.name);
  const hostVeth = hostVethName(ctx.containerId, ctx.ifname);
  // Deleting a veth waits for the kernel's teardown (an RCU grace period,
  // most of DEL's time), so the IPAM release runs beside it, as the reference
  // plugin releases before deleting. The record goes only after the link: a
  // last-container teardown must find the bridge without our port.
  const steps = await Promise.allSettled([
    (async () => {
      // Deleting the host end removes the pair; a gone namespace took both already.
      await withNetlink(undefined, (nl) => linkDelByName(nl, hostVeth));
      await forgetAttachment(state, ctx.conf, cfg, ctx.containerId, ctx.ifname, ctx.defer);
    })(),
    ctx.ipam.configured ? ctx.ipam.del() : Promise.resolve(),
  ]);
  for (const s of steps) if (s.status === 'rejected') throw s.reason;
}

function checkFailed(msg: string): CniError {
  return new CniError(CniCode.checkFailed, msg);
}

async function check(ctx: AttachmentContext, cfg: BridgeConfig, prev: Result): Promise<void> {
  const netns = requireNetns(ctx.netns, CniCode.unknownContainer);
  const hostVeth = hostVethName(ctx.containerId, ctx.ifname);
  const sandboxIdx = (prev.interfaces ?? []).findIndex((i) => i.name === ctx.ifname && i.sandbox);
  if (sandboxIdx < 0) throw checkFailed(`prevResult has no interface ${ctx.ifname} with a sandbox`);
  const want = prev.interfaces![sandboxIdx];

  await withNetlink(undefined, async (host) => {
    const br = await linkByName(host, cfg.bridge);
    if (!br || br.kind !== 'bridge') throw checkFailed(`bridge ${cfg.bridge} is missing`);
    const hv = await linkByName(host, hostVeth);
    if (!hv) throw checkFailed(`host veth ${hostVeth} is missing`);
    if (hv.master !== br.index) throw checkFailed(`host veth ${hostVeth} is not a port of ${cfg.bridge}`);
    if (!hv.up) throw checkFailed(`host veth ${hostVeth} is down`);
    if (cfg.isGateway) {
      const have = new Set((await addrList(host, { index: br.index })).map((a) => formatIp(parseCidr(a.cidr))));
      for (const ip of prev.ips ?? []) {
        if (ip.gateway && !have.has(formatIp(parseIp(ip.gateway)))) throw checkFailed(`gateway ${ip.gateway} is missing on ${cfg.bridge}`);
      }
    }
  });
  await withNetlink(netns, async (pod) => {
    const l = await linkByName(pod, ctx.ifname);
    if (!l) throw checkFailed(`interface ${ctx.ifname} is missing in ${netns}`);
    if (l.kind !== 'veth') throw checkFailed(`interface ${ctx.ifname} is a ${l.kind ?? 'non-veth'} device`);
    if (want.mac && l.mac !== want.mac.toLowerCase()) throw checkFailed(`interface ${ctx.ifname} has MAC ${l.mac}, expected ${want.mac}`);
    if (!l.up) throw checkFailed(`interface ${ctx.ifname} is down`);
    const have = await addrList(pod, { index: l.index });
    const haveSet = new Set(have.map((a) => { const c = parseCidr(a.cidr); return `${formatIp(c)}/${c.prefix}`; }));
    for (const ip of prev.ips ?? []) {
      if (ip.interface !== undefined && ip.interface !== sandboxIdx) continue;
      const c = parseCidr(ip.address);
      if (!haveSet.has(`${formatIp(c)}/${c.prefix}`)) throw checkFailed(`address ${ip.address} is missing on ${ctx.ifname}`);
    }
    const routes = await routeList(pod, { oif: l.index });
    for (const r of prev.routes ?? []) {
      const d = parseCidr(r.dst);
      const dst = `${formatIp(networkOf(d))}/${d.prefix}`;
      const found = routes.some((k) => k.dst === dst && (!r.gw || k.gw === formatIp(parseIp(r.gw))));
      if (!found) throw checkFailed(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in ${netns}`);
    }
  });
  if (ctx.ipam.configured) await ctx.ipam.check();
  const needsTable = cfg.ipMasq || cfg.isolation || (ctx.conf.runtimeConfig.portMappings ?? []).length > 0;
  if (needsTable && !(await nftTableExists(tableName(ctx.conf.name)))) throw checkFailed(`nft table inet ${tableName(ctx.conf.name)} is missing`);
}

async function gc(ctx: GcContext, cfg: BridgeConfig): Promise<void> {
  const state = new NetworkState(cfg.stateDir, ctx.conf.name);
  const validKeys = new Set(ctx.validAttachments.map((a) => attachmentKey(a.containerID, a.ifname)));
  const validVeths = new Set(ctx.validAttachments.map((a) => hostVethName(a.containerID, a.ifname)));
  ctx.defer?.cancel(teardownKey(cfg, ctx.conf));
  await state.lock(async () => {
    state.removeTorn();
    await withNetlink(undefined, async (nl) => {
      for (const rec of state.all()) {
        if (validKeys.has(attachmentKey(rec.containerId, rec.ifname))) continue;
        await linkDelByName(nl, rec.hostVeth);
        state.remove(rec.containerId, rec.ifname);
      }
      // Ports a plugin left without a record (killed before writing it): ours by name.
      const br = await linkByName(nl, cfg.bridge);
      if (br) {
        for (const l of await linkList(nl)) {
          if (l.master === br.index && HOST_VETH_RE.test(l.name) && !validVeths.has(l.name)) {
            try { await linkDel(nl, l.index); } catch (err) { if (!(err instanceof NotFoundError)) throw err; }
          }
        }
      }
    });
    await teardownOrSync(state, ctx.conf, cfg);
  });
  if (ctx.ipam.configured) await ctx.ipam.gc(ctx.validAttachments);
}

async function status(_ctx: BaseContext, _cfg: BridgeConfig): Promise<void> {
  try {
    await withNetlink(undefined, async (nl) => { await linkByName(nl, 'lo'); });
  } catch (err) {
    throw new CniError(CniCode.notAvailable, `netlink unavailable: ${(err as Error).message}`);
  }
  try {
    await nftApply('list tables\n');
  } catch (err) {
    throw new CniError(CniCode.notAvailable, `nftables unavailable: ${(err as Error).message}`);
  }
}

export const driver: Driver<BridgeConfig> = {
  name: 'bridge',
  loadConfig: loadBridgeConfig,
  add,
  del,
  check,
  gc,
  status,
};

// Exposed for unit tests of the pure planning step.
export const __test = { plan };
