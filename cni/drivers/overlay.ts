/**
 * The overlay driver (`"driver": "overlay"`): pods of this host sit on the
 * node's pod bridge and get addresses from the pod subnet this node leased
 * from the cluster CIDR; the node agent (`meshwork agent`) owns that lease,
 * the bridge, the VXLAN device and the routes to other nodes, and writes
 * `<nodeStateDir>/overlay/<network>.json`, which this driver reads.
 *
 * Wiring a pod on the bridge is exactly the bridge driver's job, so this
 * driver derives a bridge config (bridge name, MTU, gateway as default route,
 * no NAT: pod-to-pod traffic keeps its source address across nodes) and an
 * IPAM config whose ranges are the node's subnets, and delegates to it.
 *
 * Config fields: `nodeStateDir` (default /run/meshwork, as the agent's
 * --state-dir), `stateDir` (attachment records, as the bridge driver), `mtu`
 * (at most the overlay MTU), `ipam` (optional; `type` "meshwork" by default,
 * `dataDir`, `routes`, `dns`; `ranges`/`subnet` are not allowed: the subnet
 * is the node's lease), `hairpinMode`, `promiscMode`.
 */
import { driver as bridgeDriver, loadBridgeConfig, type BridgeConfig } from './bridge';
import type { AttachmentContext, BaseContext, Driver, GcContext, IpamPort } from './driver';
import { field, show } from '../config';
import { CniCode, CniError, ConfigError, UnsupportedFieldError, type Attachment, type NetConf, type Result } from '../types';
import type { IpamContext } from '../ipam/types';
import { formatCidr, networkOf, parseCidr } from '../netlink/ip';
import { DEFAULT_STATE_DIR as NODE_STATE_DIR, NodeStateMissingError, readNodeState, type OverlayNodeState } from '../../agent/node-state';

export interface OverlayConfig {
  nodeStateDir: string;
  mtu?: number;
  /** The user's ipam section without ranges (type defaults to "meshwork"). */
  ipam: Record<string, unknown>;
  /** Raw config, re-derived per call once the node state is known. */
  raw: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function loadOverlayConfig(conf: NetConf): OverlayConfig {
  const raw = conf.raw;
  const nodeStateDir = field.str(raw, 'nodeStateDir', NODE_STATE_DIR)!;
  if (!nodeStateDir.startsWith('/')) throw new ConfigError('nodeStateDir', `expected an absolute path, got ${show(nodeStateDir)}`);
  if (raw.bridge !== undefined) throw new UnsupportedFieldError('bridge', raw.bridge, 'the overlay bridge is the node agent\'s (meshwork agent --bridge)');
  for (const k of ['ipMasq', 'isGateway', 'isDefaultGateway']) {
    if (raw[k] !== undefined) throw new UnsupportedFieldError(k, raw[k], 'the overlay always routes pods through the node gateway, without NAT between pods');
  }
  const ipam = raw.ipam === undefined ? { type: 'meshwork' } : raw.ipam;
  if (!isObject(ipam)) throw new ConfigError('ipam', `expected an object, got ${show(ipam)}`);
  for (const k of ['ranges', 'subnet', 'rangeStart', 'rangeEnd', 'gateway']) {
    if (ipam[k] !== undefined) throw new UnsupportedFieldError(`ipam.${k}`, ipam[k], 'pod addresses come from the node\'s leased subnet');
  }
  const cfg: OverlayConfig = {
    nodeStateDir,
    mtu: field.int(raw, 'mtu', 576, 65535),
    ipam: { type: 'meshwork', ...ipam },
    raw,
  };
  // Validate the bridge-level fields now (before any change), with a stand-in bridge name.
  loadBridgeConfig({ ...conf, raw: { ...raw, bridge: 'mw.check', mtu: cfg.mtu } });
  return cfg;
}

/** The node's overlay state, or a clear "not ready" error. */
function nodeState(conf: NetConf, cfg: OverlayConfig, code: number): OverlayNodeState {
  let st: OverlayNodeState | undefined;
  try {
    st = readNodeState(cfg.nodeStateDir, conf.name);
  } catch (err) {
    throw new CniError(code, (err as Error).message, undefined, { cause: err });
  }
  if (!st) {
    const e = new NodeStateMissingError(`${cfg.nodeStateDir}/overlay/${conf.name}.json`, conf.name);
    throw new CniError(code, e.message, undefined, { cause: e });
  }
  if (cfg.mtu !== undefined && cfg.mtu > st.mtu) throw new ConfigError('mtu', `${cfg.mtu} is above the overlay MTU ${st.mtu} of this node`);
  return st;
}

/** The bridge-driver view of this network on this node. */
function derive(ctx: BaseContext, cfg: OverlayConfig, st: OverlayNodeState | undefined, fallbackRanges: string[]): { ctx: BaseContext; bridge: BridgeConfig } {
  const subnets = st ? st.subnets : fallbackRanges;
  const ranges = subnets.map((s, i) => [{ subnet: s, ...(st ? { gateway: st.gateways[i] } : {}) }]);
  const raw: Record<string, unknown> = {
    ...cfg.raw,
    bridge: st?.bridge ?? 'mw.br0',
    mtu: cfg.mtu ?? st?.mtu,
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: false,
    isolation: false,
    ipam: { ...cfg.ipam, ranges },
  };
  const conf: NetConf = { ...ctx.conf, ipam: raw.ipam as Record<string, unknown>, raw };
  const rawStdin = Buffer.from(JSON.stringify(raw));
  return { ctx: { ...ctx, conf, rawStdin, ipam: ipamPort(conf, rawStdin, ctx) }, bridge: loadBridgeConfig(conf) };
}

function ipamPort(conf: NetConf, rawStdin: Buffer, ctx: BaseContext): IpamPort {
  const ipam = () => require('../ipam/index') as typeof import('../ipam/index');
  const att = ctx as Partial<AttachmentContext>;
  const c = (): IpamContext => ({ netconf: conf.raw, rawStdin, env: ctx.env, containerId: att.containerId ?? '', ifname: att.ifname ?? '' });
  return {
    configured: true,
    add: () => ipam().ipamAdd(c()),
    del: () => ipam().ipamDel(c()),
    check: () => ipam().ipamCheck(c()),
    gc: (validAttachments: Attachment[]) => ipam().ipamGc({ netconf: conf.raw, rawStdin, env: ctx.env, validAttachments }),
  };
}

/**
 * DEL and GC must work after the agent is gone: IPAM releases by attachment,
 * so any syntactically valid range does; prefer the subnets of prevResult.
 */
function fallbackRanges(conf: NetConf): string[] {
  const ips = (conf.prevResult as { ips?: Array<{ address?: unknown }> } | undefined)?.ips ?? [];
  const nets = ips.map((i) => (typeof i.address === 'string' ? i.address : '')).filter(Boolean).map(networkCidr);
  return nets.length ? [...new Set(nets)] : ['192.0.2.0/24'];
}

const networkCidr = (cidr: string): string => formatCidr(networkOf(parseCidr(cidr)));

function tolerant(conf: NetConf, cfg: OverlayConfig): OverlayNodeState | undefined {
  try { return readNodeState(cfg.nodeStateDir, conf.name); } catch { return undefined; }
}

export const driver: Driver<OverlayConfig> = {
  name: 'overlay',
  loadConfig: loadOverlayConfig,
  async add(ctx, cfg): Promise<Result> {
    const d = derive(ctx, cfg, nodeState(ctx.conf, cfg, CniCode.tryAgainLater), []);
    return bridgeDriver.add({ ...ctx, ...d.ctx }, d.bridge);
  },
  async del(ctx, cfg) {
    const d = derive(ctx, cfg, tolerant(ctx.conf, cfg), fallbackRanges(ctx.conf));
    await bridgeDriver.del({ ...ctx, ...d.ctx }, d.bridge);
  },
  async check(ctx, cfg, prev) {
    const d = derive(ctx, cfg, nodeState(ctx.conf, cfg, CniCode.checkFailed), []);
    await bridgeDriver.check({ ...ctx, ...d.ctx }, d.bridge, prev);
  },
  async gc(ctx: GcContext, cfg) {
    const d = derive(ctx, cfg, tolerant(ctx.conf, cfg), fallbackRanges(ctx.conf));
    await bridgeDriver.gc({ ...ctx, ...d.ctx, validAttachments: ctx.validAttachments }, d.bridge);
  },
  async status(ctx, cfg) {
    nodeState(ctx.conf, cfg, CniCode.notAvailable);
    await bridgeDriver.status(ctx, loadBridgeConfig({ ...ctx.conf, raw: { ...ctx.conf.raw, bridge: 'mw.check' } }));
  },
};
