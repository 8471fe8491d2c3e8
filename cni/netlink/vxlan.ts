/**
 * VXLAN device verbs: encode/decode IFLA_VXLAN_* (linux/if_link.h) and an
 * idempotent `vxlanEnsure` that leaves a matching device alone and replaces
 * one whose identity (VNI, port, local address, learning) is wrong.
 */
import { bytes, nla, u32, u8, findAttr, type Attr } from './attrs';
import { formatIp, parseIp } from './ip';
import { linkAdd, linkByName, linkDel, linkSetMtu, linkSetUp, type Link } from './link';
import type { Netlink } from './socket';
import { MeshworkError } from '../../lib/errors';

const IFLA_VXLAN = { ID: 1, LINK: 3, LOCAL: 4, LEARNING: 7, PORT: 15, LOCAL6: 17, UDP_CSUM: 18 } as const;

export interface VxlanSpec {
  name: string;
  vni: number;
  /** UDP destination port (8472 is the Linux/flannel default, 4789 the IANA one). */
  port: number;
  /** Underlay address packets leave from (IPv4 or IPv6). */
  local: string;
  /** Underlay link index, so the device follows that link's MTU and state. */
  parent?: number;
  learning?: boolean;
  mtu?: number;
  /** Fixed VTEP MAC: keeps peers' neighbour/FDB entries valid across re-creation. */
  mac?: string;
  /**
   * Outer UDP checksum over an IPv4 underlay (RFC 7348 allows zero; the inner
   * packet carries its own). Off by default: computing it defeats tunnel GSO
   * on links without checksum offload for it and costs ~15% throughput here.
   */
  udpCsum?: boolean;
}

export interface VxlanInfo { vni?: number; port?: number; local?: string; learning?: boolean; parent?: number; udpCsum?: boolean }

export class VxlanConflictError extends MeshworkError {
  constructor(name: string, kind: string | undefined) {
    super('EVXLAN_CONFLICT', `link ${name} exists and is a ${kind ?? 'non-virtual'} link, not vxlan: refusing to replace it`);
  }
}

/** IFLA_INFO_DATA children for a new VXLAN device. */
export function vxlanData(s: VxlanSpec): Buffer[] {
  const local = parseIp(s.local);
  const port = Buffer.alloc(2);
  port.writeUInt16BE(s.port, 0);
  const out = [
    u32(IFLA_VXLAN.ID, s.vni),
    local.family === 4 ? bytes(IFLA_VXLAN.LOCAL, local.bytes) : bytes(IFLA_VXLAN.LOCAL6, local.bytes),
    u8(IFLA_VXLAN.LEARNING, s.learning ? 1 : 0),
    nla(IFLA_VXLAN.PORT, port),
  ];
  if (s.parent !== undefined) out.push(u32(IFLA_VXLAN.LINK, s.parent));
  if (local.family === 4) out.push(u8(IFLA_VXLAN.UDP_CSUM, s.udpCsum ? 1 : 0));
  return out;
}

/** Reads the identity of a VXLAN device back from its IFLA_INFO_DATA. */
export function parseVxlanInfo(data: Attr[] | undefined): VxlanInfo {
  if (!data) return {};
  const id = findAttr(data, IFLA_VXLAN.ID);
  const local = findAttr(data, IFLA_VXLAN.LOCAL) ?? findAttr(data, IFLA_VXLAN.LOCAL6);
  const learning = findAttr(data, IFLA_VXLAN.LEARNING);
  const port = findAttr(data, IFLA_VXLAN.PORT);
  const parent = findAttr(data, IFLA_VXLAN.LINK);
  const csum = findAttr(data, IFLA_VXLAN.UDP_CSUM);
  return {
    udpCsum: csum ? csum[0] === 1 : undefined,
    vni: id ? id.readUInt32LE(0) : undefined,
    local: local && (local.length === 4 || local.length === 16) ? formatIp(local) : undefined,
    learning: learning ? learning[0] === 1 : undefined,
    port: port ? port.readUInt16BE(0) : undefined,
    parent: parent ? parent.readUInt32LE(0) || undefined : undefined,
  };
}

/** Whether an existing device carries the identity `s` asks for (MTU and state are fixed in place). */
export function vxlanMatches(l: Link, s: VxlanSpec): boolean {
  if (l.kind !== 'vxlan') return false;
  const i = parseVxlanInfo(l.infoData);
  return i.vni === s.vni && i.port === s.port && i.local === formatIp(parseIp(s.local)) && i.learning === !!s.learning &&
    (s.parent === undefined || i.parent === s.parent) && (!s.mac || l.mac === s.mac.toLowerCase()) &&
    (parseIp(s.local).family === 6 || i.udpCsum === undefined || i.udpCsum === !!s.udpCsum);
}

export interface VxlanEnsureResult { link: Link; created: boolean }

/**
 * Makes link `s.name` a VXLAN device as specified, up, with the MTU asked for.
 * A matching device is kept (its FDB and neighbours survive an agent restart);
 * a VXLAN device with another identity is replaced; any other kind of link
 * with that name is someone else's and is an error.
 */
export async function vxlanEnsure(nl: Netlink, s: VxlanSpec): Promise<VxlanEnsureResult> {
  let l = await linkByName(nl, s.name);
  let created = false;
  if (l && l.kind !== 'vxlan') throw new VxlanConflictError(s.name, l.kind);
  if (l && !vxlanMatches(l, s)) {
    await linkDel(nl, l.index);
    l = undefined;
  }
  if (!l) {
    await linkAdd(nl, { name: s.name, kind: 'vxlan', data: vxlanData(s), mtu: s.mtu, mac: s.mac });
    created = true;
    l = await linkByName(nl, s.name);
    if (!l) throw new MeshworkError('EVXLAN', `vxlan ${s.name} vanished right after creation`);
  }
  if (s.mtu !== undefined && l.mtu !== s.mtu) await linkSetMtu(nl, l.index, s.mtu);
  if (!l.up) await linkSetUp(nl, l.index);
  const final = await linkByName(nl, s.name);
  return { link: final ?? l, created };
}
