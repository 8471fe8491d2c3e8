/**
 * The macvlan driver (`"driver": "macvlan"`): the container gets a macvlan
 * sub-interface of `master`, born directly inside its namespace under
 * CNI_IFNAME, with addresses and routes from IPAM. `master` is required: the
 * reference plugin's fallback to the default-route interface silently puts
 * containers on whatever network that happens to be.
 *
 * Config fields: `master` (required, a link in the namespace the plugin runs
 * in), `mode` (bridge | private | vepa | passthru; default bridge), `mtu`
 * (at most the master's), `ipam` (required).
 */
import * as fs from 'node:fs';
import { releaseAfterFailedAdd, transaction, type AttachmentContext, type BaseContext, type Driver, type GcContext } from './driver';
import { field, show } from '../config';
import { CniCode, CniError, ConfigError, type NetConf, type Result, type ResultRoute } from '../types';
import { withNetlink, netnsFd, ExistsError, NotFoundError } from '../netlink/socket';
import { linkByName, linkDel } from '../netlink/link';
import { addrList } from '../netlink/addr';
import { configureContainerLink, type ContainerAddressing } from './container-link';
import { routeList } from '../netlink/route';
import { formatIp, networkOf, parseCidr, parseIp } from '../netlink/ip';
import { macvlanAdd, macvlanModeOf, MACVLAN_MODES, type MacvlanMode } from '../netlink/macvlan';
import { MeshworkError } from '../../lib/errors';
import { NetnsNotFoundError } from '../../lib/netns';
import type { IpamResult } from '../ipam/types';

export interface MacvlanConfig {
  master: string;
  mode: MacvlanMode;
  mtu?: number;
}

const IFNAME_RE = /^[^\s/:]{1,15}$/;

export function loadMacvlanConfig(conf: NetConf): MacvlanConfig {
  const raw = conf.raw;
  const master = field.str(raw, 'master');
  if (master === undefined) throw new ConfigError('master', 'is required: name the parent link (no fallback to the default-route interface)');
  if (!IFNAME_RE.test(master)) throw new ConfigError('master', `${show(master)} is not a valid interface name`);
  const mode = field.str(raw, 'mode', 'bridge')!;
  if (!(mode in MACVLAN_MODES)) throw new ConfigError('mode', `expected one of ${Object.keys(MACVLAN_MODES).join(', ')}, got ${show(mode)}`);
  if (!conf.ipam) throw new ConfigError('ipam', 'the macvlan driver needs an "ipam" section');
  return { master, mode: mode as MacvlanMode, mtu: field.int(raw, 'mtu', 68, 65535) };
}

function requireNetns(netns: string | undefined, code: number): string {
  if (!netns) throw new CniError(CniCode.invalidEnv, 'CNI_NETNS: required');
  try {
    fs.closeSync(netnsFd(netns));
  } catch (err) {
    if (err instanceof NetnsNotFoundError) throw new CniError(code, `CNI_NETNS: network namespace ${netns} does not exist`, undefined, { cause: err });
    throw err;
  }
  return netns;
}

type Addressing = ContainerAddressing & { routes: ResultRoute[] };

function addressing(r: IpamResult): Addressing {
  const ips = r.ips.map((ip, i) => {
    let c;
    try { c = parseCidr(ip.address); } catch { throw new CniError(CniCode.invalidConfig, `IPAM returned an invalid address ips[${i}]: ${show(ip.address)}`); }
    return { address: ip.address, gateway: ip.gateway, family: c.family };
  });
  const routes = (r.routes ?? []).map((x) => {
    const d = networkOf(parseCidr(x.dst));
    return x.gw ? { dst: `${formatIp(d)}/${d.prefix}`, gw: x.gw } : { dst: `${formatIp(d)}/${d.prefix}` };
  });
  return { ips, routes };
}

async function add(ctx: AttachmentContext, cfg: MacvlanConfig): Promise<Result> {
  const netns = requireNetns(ctx.netns, CniCode.invalidEnv);
  return transaction(async (tx) => {
    const parent = await withNetlink(undefined, async (host) => {
      const m = await linkByName(host, cfg.master);
      if (!m) throw new ConfigError('master', `link ${cfg.master} does not exist in the plugin's namespace`);
      if (cfg.mtu !== undefined && m.mtu !== undefined && cfg.mtu > m.mtu) throw new ConfigError('mtu', `${cfg.mtu} is above the MTU ${m.mtu} of master ${cfg.master}`);
      return m;
    });

    const ipamResult = await ctx.ipam.add();
    tx.onUndo('release the IPAM allocation', () => releaseAfterFailedAdd(ctx.ipam));
    const a = addressing(ipamResult);
    if (!a.ips.length) throw new CniError(CniCode.invalidConfig, 'IPAM returned no address');

    const fd = netnsFd(netns);
    try {
      await withNetlink(undefined, (host) => macvlanAdd(host, {
        name: ctx.ifname, parent: parent.index, mode: cfg.mode, mtu: cfg.mtu, mac: ctx.conf.runtimeConfig.mac, netnsFd: fd,
      }));
    } catch (err) {
      if (err instanceof ExistsError) throw new CniError(CniCode.invalidConfig, `interface ${ctx.ifname} already exists in ${netns}`, undefined, { cause: err });
      if (err instanceof MeshworkError && cfg.mode === 'passthru' && /EBUSY|EINVAL/.test(err.message)) {
        throw new CniError(CniCode.invalidConfig, `master ${cfg.master} already has a macvlan: passthru mode allows only one`, undefined, { cause: err });
      }
      throw err;
    } finally {
      fs.closeSync(fd);
    }
    tx.onUndo(`delete ${ctx.ifname} in ${netns}`, () => withNetlink(netns, async (pod) => {
      const l = await linkByName(pod, ctx.ifname);
      if (l) await linkDel(pod, l.index);
    }));

    const link = await withNetlink(netns, async (pod) => { const l = await configureContainerLink(pod, ctx.ifname, a); return { mac: l.mac, mtu: l.mtu }; });
    const v11 = ctx.version === '1.1.0';
    return {
      interfaces: [{ name: ctx.ifname, mac: link.mac, sandbox: netns, ...(v11 && link.mtu ? { mtu: link.mtu } : {}) }],
      ips: a.ips.map((i) => ({ address: i.address, gateway: i.gateway, interface: 0 })),
      routes: a.routes,
      dns: ipamResult.dns && Object.keys(ipamResult.dns).length ? ipamResult.dns : ctx.conf.dns,
    };
  });
}

async function del(ctx: AttachmentContext, _cfg: MacvlanConfig): Promise<void> {
  if (ctx.netns) {
    try {
      await withNetlink(ctx.netns, async (pod) => {
        const l = await linkByName(pod, ctx.ifname);
        if (l && l.kind === 'macvlan') await linkDel(pod, l.index);
      });
    } catch (err) {
      // A namespace that is gone took the sub-interface with it.
      if (!(err instanceof NetnsNotFoundError) && !(err instanceof NotFoundError)) throw err;
    }
  }
  if (ctx.ipam.configured) await ctx.ipam.del();
}

const checkFailed = (msg: string) => new CniError(CniCode.checkFailed, msg);

async function check(ctx: AttachmentContext, cfg: MacvlanConfig, prev: Result): Promise<void> {
  const netns = requireNetns(ctx.netns, CniCode.unknownContainer);
  const idx = (prev.interfaces ?? []).findIndex((i) => i.name === ctx.ifname && i.sandbox);
  if (idx < 0) throw checkFailed(`prevResult has no interface ${ctx.ifname} with a sandbox`);
  const want = prev.interfaces![idx];
  await withNetlink(netns, async (pod) => {
    const l = await linkByName(pod, ctx.ifname);
    if (!l) throw checkFailed(`interface ${ctx.ifname} is missing in ${netns}`);
    if (l.kind !== 'macvlan') throw checkFailed(`interface ${ctx.ifname} is a ${l.kind ?? 'non-macvlan'} device`);
    const mode = macvlanModeOf(l.infoData);
    if (mode !== cfg.mode) throw checkFailed(`interface ${ctx.ifname} is in mode ${mode}, expected ${cfg.mode}`);
    if (want.mac && l.mac !== want.mac.toLowerCase()) throw checkFailed(`interface ${ctx.ifname} has MAC ${l.mac}, expected ${want.mac}`);
    if (!l.up) throw checkFailed(`interface ${ctx.ifname} is down`);
    const have = new Set((await addrList(pod, { index: l.index })).map((x) => { const c = parseCidr(x.cidr); return `${formatIp(c)}/${c.prefix}`; }));
    for (const ip of prev.ips ?? []) {
      if (ip.interface !== undefined && ip.interface !== idx) continue;
      const c = parseCidr(ip.address);
      if (!have.has(`${formatIp(c)}/${c.prefix}`)) throw checkFailed(`address ${ip.address} is missing on ${ctx.ifname}`);
    }
    const routes = await routeList(pod, { oif: l.index });
    for (const r of prev.routes ?? []) {
      const d = networkOf(parseCidr(r.dst));
      const dst = `${formatIp(d)}/${d.prefix}`;
      if (!routes.some((k) => k.dst === dst && (!r.gw || k.gw === formatIp(parseIp(r.gw))))) throw checkFailed(`route ${r.dst} is missing in ${netns}`);
    }
  });
  if (ctx.ipam.configured) await ctx.ipam.check();
}

async function gc(ctx: GcContext, _cfg: MacvlanConfig): Promise<void> {
  // The sub-interfaces live (and die) in container namespaces; only IPAM holds host-side state.
  if (ctx.ipam.configured) await ctx.ipam.gc(ctx.validAttachments);
}

async function status(_ctx: BaseContext, cfg: MacvlanConfig): Promise<void> {
  const m = await withNetlink(undefined, (nl) => linkByName(nl, cfg.master)).catch((err) => {
    throw new CniError(CniCode.notAvailable, `netlink unavailable: ${(err as Error).message}`);
  });
  if (!m) throw new CniError(CniCode.notAvailable, `master ${cfg.master} does not exist`);
}

export const driver: Driver<MacvlanConfig> = { name: 'macvlan', loadConfig: loadMacvlanConfig, add, del, check, gc, status };
