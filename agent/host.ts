/**
 * This host's side of the overlay, made idempotently: forwarding on, the VXLAN
 * device (VTEP) with the VTEP address of each pod subnet, and the pod bridge
 * with the gateway address of each pod subnet. Everything that is already
 * right is left untouched, so pods keep working across agent restarts.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { addrAdd, addrDel, addrList } from '../cni/netlink/addr';
import { formatIp, parseIp } from '../cni/netlink/ip';
import { linkAddBridge, linkByIndex, linkByName, linkDelByName, linkSetMtu, linkSetUp, type Link } from '../cni/netlink/link';
import type { Netlink } from '../cni/netlink/socket';
import { vxlanEnsure } from '../cni/netlink/vxlan';
import { MeshworkError, withContext } from '../lib/errors';
import { inNetnsSync } from '../lib/netns';
import { addrAt, ipIn, parseNet, type Net } from './subnet-math';

export class UnderlayError extends MeshworkError {
  constructor(message: string) { super('EUNDERLAY', message); }
}

/** VXLAN over IPv4 adds 50 bytes (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14); over IPv6, 70. */
export const vxlanOverhead = (underlay: string): number => (parseIp(underlay).family === 4 ? 50 : 70);

/**
 * A locally administered unicast MAC derived from node, network and VNI: the
 * same after a reboot or device re-creation, so peers' entries stay right.
 */
export function vtepMacFor(node: string, network: string, vni: number): string {
  const h = crypto.createHash('sha256').update(`${node}\0${network}\0${vni}`).digest();
  h[0] = (h[0] & 0xfe) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The link holding the underlay address (the VTEP's lower device). */
export async function findUnderlay(nl: Netlink, underlay: string): Promise<Link> {
  const want = parseIp(underlay);
  const addrs = await addrList(nl, { family: want.family });
  const hit = addrs.find((a) => parseIp(a.cidr.split('/')[0]).bytes.equals(want.bytes));
  if (!hit) throw new UnderlayError(`underlay address ${underlay} is not configured on any link of this host`);
  const l = await linkByIndex(nl, hit.index);
  if (!l) throw new UnderlayError(`link #${hit.index} holding ${underlay} vanished`);
  return l;
}

/** Turns on IP forwarding for the families in use (the host routes between bridge and VXLAN). */
export function ensureForwarding(families: Set<4 | 6>, netnsPath?: string): void {
  // /proc/sys/net resolves to the namespace of the thread that opens it, so a
  // socket's namespace other than ours is entered for the synchronous write.
  const set = (file: string) => {
    const write = () => { if (fs.readFileSync(file, 'utf8').trim() !== '1') fs.writeFileSync(file, '1'); };
    try {
      if (netnsPath) inNetnsSync(netnsPath, write); else write();
    } catch (err) {
      throw withContext(`enable forwarding (${file})`, err);
    }
  };
  const procRoot = '/proc/sys/net';
  if (families.has(4)) set(`${procRoot}/ipv4/ip_forward`);
  if (families.has(6)) set(`${procRoot}/ipv6/conf/all/forwarding`);
}

/**
 * Makes link `index` carry exactly `want` among addresses inside the cluster
 * CIDRs: adds the missing ones, removes stale ones (a subnet we no longer
 * hold); addresses outside the cluster CIDRs are not ours and stay.
 */
export async function ensureAddresses(nl: Netlink, index: number, want: string[], clusters: Net[]): Promise<void> {
  const have = (await addrList(nl, { index })).filter((a) => clusters.some((c) => ipIn(c, a.cidr.split('/')[0])));
  const norm = (c: string) => { const [ip, p] = c.split('/'); return `${formatIp(parseIp(ip))}/${p}`; };
  const haveSet = new Set(have.map((a) => norm(a.cidr)));
  const wantSet = new Set(want.map(norm));
  for (const c of wantSet) if (!haveSet.has(c)) await addrAdd(nl, index, c, { noDad: true });
  for (const a of have) if (!wantSet.has(norm(a.cidr))) await addrDel(nl, index, a.cidr);
}

export interface HostSpec {
  node: string;
  network: string;
  underlay: string;
  vxlanName: string;
  vni: number;
  port: number;
  bridgeName: string;
  /** Our pod subnets, one per cluster CIDR. */
  subnets: string[];
  clusters: Net[];
  /** Override the MTU derived from the underlay link. */
  mtu?: number;
  udpCsum?: boolean;
}

export interface HostState {
  vxlanIndex: number;
  vtepMac: string;
  bridgeIndex: number;
  mtu: number;
  /** Bridge gateway per subnet, e.g. 10.244.3.1 for 10.244.3.0/24. */
  gateways: string[];
}

export async function ensureHost(nl: Netlink, s: HostSpec): Promise<HostState> {
  const families = new Set(s.clusters.map((c) => c.family));
  ensureForwarding(families, nl.netns);
  const lower = await findUnderlay(nl, s.underlay);
  const mtu = s.mtu ?? (lower.mtu ?? 1500) - vxlanOverhead(s.underlay);
  const vtepMac = vtepMacFor(s.node, s.network, s.vni);
  const vx = await vxlanEnsure(nl, {
    name: s.vxlanName, vni: s.vni, port: s.port, local: s.underlay, parent: lower.index, learning: false, mtu, mac: vtepMac, udpCsum: s.udpCsum,
  }).catch((err) => { throw withContext(`vxlan ${s.vxlanName}`, err); });
  // VTEP address: the network address of each subnet, as a host route (/32, /128).
  const vtepAddrs = s.subnets.map((sub) => { const n = parseNet(sub); return `${addrAt(n, 0)}/${n.family === 4 ? 32 : 128}`; });
  await ensureAddresses(nl, vx.link.index, vtepAddrs, s.clusters).catch((err) => { throw withContext(`vxlan ${s.vxlanName} addresses`, err); });

  const br = await ensureBridge(nl, s.bridgeName, mtu);
  const gateways = s.subnets.map((sub) => addrAt(parseNet(sub), 1));
  const gwCidrs = s.subnets.map((sub, i) => `${gateways[i]}/${parseNet(sub).prefix}`);
  await ensureAddresses(nl, br.index, gwCidrs, s.clusters).catch((err) => { throw withContext(`bridge ${s.bridgeName} addresses`, err); });
  return { vxlanIndex: vx.link.index, vtepMac: vx.link.mac ?? vtepMac, bridgeIndex: br.index, mtu, gateways };
}

async function ensureBridge(nl: Netlink, name: string, mtu: number): Promise<Link> {
  try {
    let l = await linkByName(nl, name);
    if (l && l.kind !== 'bridge') throw new MeshworkError('EBRIDGE_CONFLICT', `link ${name} exists and is a ${l.kind ?? 'non-virtual'} link, not a bridge`);
    if (!l) {
      await linkAddBridge(nl, { name, mtu });
      l = await linkByName(nl, name);
      if (!l) throw new MeshworkError('EBRIDGE', `bridge ${name} vanished right after creation`);
    }
    if (l.mtu !== mtu) await linkSetMtu(nl, l.index, mtu);
    if (!l.up) await linkSetUp(nl, l.index);
    return l;
  } catch (err) {
    throw withContext(`bridge ${name}`, err);
  }
}

/** Decommission: removes the VTEP (peers' traffic to us stops at once; pods on the bridge stay until deleted). */
export async function removeVtep(nl: Netlink, vxlanName: string): Promise<void> {
  await linkDelByName(nl, vxlanName);
}
