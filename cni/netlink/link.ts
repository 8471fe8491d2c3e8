/**
 * Link verbs: look up, create (veth with the peer born in another namespace,
 * bridge, any kind with raw IFLA_INFO_DATA), enslave, set state/MTU/MAC/name,
 * move between namespaces, delete, and bridge-port flags.
 */
import { dumpRaw, request, NotFoundError, type Netlink } from './socket';
import { IFLA, IFLA_BRPORT, bytes, linkInfo, nla, parseLinkInfo, slaveInfo, str, u8, u32, vethPeer, findAttr, type Attr } from './attrs';
import { IFF, IFLA_X, NLM_F, RTM, decodeIfinfo, ifinfo, strAt, u32At } from './codec';

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: "veth", "bridge", "vxlan", ... (undefined for physical/loopback). */
  kind?: string;
  /** IFLA_INFO_SLAVE_KIND when enslaved ("bridge"). */
  slaveKind?: string;
  master?: number;
  /** IFLA_LINK: the peer/parent index (for veth, in the peer's namespace). */
  parent?: number;
  mtu?: number;
  mac?: string;
  /** IFLA_IFALIAS, free text (meshwork marks the bridges it creates). */
  alias?: string;
  /** IFLA_GROUP (0 = default group). */
  group: number;
  up: boolean;
  promisc: boolean;
  /** Kind-specific attributes (IFLA_INFO_DATA), for drivers that need them. */
  infoData?: Attr[];
  slaveData?: Attr[];
}

export const macToString = (b: Buffer | undefined): string | undefined =>
  b && b.length === 6 ? [...b].map((x) => x.toString(16).padStart(2, '0')).join(':') : undefined;

export function macFromString(s: string): Buffer {
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(s)) throw new TypeError(`invalid MAC address "${s}"`);
  return Buffer.from(s.split(':').map((x) => parseInt(x, 16)));
}

function toLink(data: Buffer): Link {
  const m = decodeIfinfo(data);
  const info = parseLinkInfo(findAttr(m.attrs, IFLA.LINKINFO));
  const mac = findAttr(m.attrs, IFLA.ADDRESS);
  return {
    index: m.index,
    name: strAt(m.attrs, IFLA.IFNAME) ?? '',
    kind: info.kind,
    slaveKind: info.slaveKind,
    master: u32At(m.attrs, IFLA.MASTER) || undefined,
    parent: u32At(m.attrs, IFLA.LINK),
    mtu: u32At(m.attrs, IFLA.MTU),
    mac: macToString(mac),
    alias: strAt(m.attrs, IFLA_X.IFALIAS) || undefined,
    group: u32At(m.attrs, IFLA_X.GROUP) ?? 0,
    up: (m.flags & IFF.UP) !== 0,
    promisc: (m.flags & IFF.PROMISC) !== 0,
    infoData: info.data,
    slaveData: info.slaveData,
  };
}

async function getLink(nl: Netlink, op: string, payload: Buffer[]): Promise<Link | undefined> {
  try {
    const [m] = await request(nl, op, RTM.GETLINK, payload);
    return m ? toLink(m.data) : undefined;
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

/** The link called `name`, or undefined when there is none. */
export function linkByName(nl: Netlink, name: string): Promise<Link | undefined> {
  return getLink(nl, `get link ${name}`, [ifinfo(), str(IFLA.IFNAME, name)]);
}

export function linkByIndex(nl: Netlink, index: number): Promise<Link | undefined> {
  return getLink(nl, `get link #${index}`, [ifinfo({ index })]);
}

export async function linkList(nl: Netlink): Promise<Link[]> {
  const msgs = await dumpRaw(nl, 'list links', RTM.GETLINK, [ifinfo()]);
  return msgs.filter((m) => m.type === RTM.NEWLINK).map((m) => toLink(m.data));
}

export interface LinkAddOptions {
  name: string;
  kind: string;
  /** IFLA_INFO_DATA children, already encoded (see attrs.ts). */
  data?: Buffer[];
  mtu?: number;
  mac?: string;
  /** IFLA_LINK: parent link index (macvlan/vxlan lower device). */
  parent?: number;
  master?: number;
  /** Create the link directly in the namespace of this fd. */
  netnsFd?: number;
}

/** Creates a link; fails with ExistsError if the name is taken (never modifies an existing one). */
export async function linkAdd(nl: Netlink, o: LinkAddOptions): Promise<void> {
  const attrs = [str(IFLA.IFNAME, o.name)];
  if (o.mtu !== undefined) attrs.push(u32(IFLA.MTU, o.mtu));
  if (o.mac) attrs.push(bytes(IFLA.ADDRESS, macFromString(o.mac)));
  if (o.master !== undefined) attrs.push(u32(IFLA.MASTER, o.master));
  if (o.netnsFd !== undefined) attrs.push(u32(IFLA.NET_NS_FD, o.netnsFd));
  if (o.parent !== undefined) attrs.push(u32(IFLA.LINK, o.parent));
  attrs.push(nla(IFLA.LINKINFO, linkInfo(o.kind, o.data), true));
  await request(nl, `add ${o.kind} link ${o.name}`, RTM.NEWLINK, [ifinfo(), ...attrs], NLM_F.CREATE | NLM_F.EXCL);
}

export interface VethOptions {
  /** Name of the end that stays in this socket's namespace. */
  name: string;
  peerName: string;
  /** Namespace fd the peer is created in (default: same namespace). */
  peerNetnsFd?: number;
  mtu?: number;
  mac?: string;
  peerMac?: string;
}

/** Creates a veth pair in one step; with `peerNetnsFd` the peer is born inside that namespace. */
export async function linkAddVeth(nl: Netlink, o: VethOptions): Promise<void> {
  const peer = vethPeer({ name: o.peerName, netnsFd: o.peerNetnsFd, mtu: o.mtu, mac: o.peerMac ? macFromString(o.peerMac) : undefined });
  await linkAdd(nl, { name: o.name, kind: 'veth', data: [peer], mtu: o.mtu, mac: o.mac });
}

export async function linkAddBridge(nl: Netlink, o: { name: string; mtu?: number }): Promise<void> {
  await linkAdd(nl, { name: o.name, kind: 'bridge', mtu: o.mtu });
}

export async function linkDel(nl: Netlink, index: number): Promise<void> {
  await request(nl, `delete link #${index}`, RTM.DELLINK, [ifinfo({ index })]);
}

/** Deletes the link called `name`; returns false when it did not exist. */
export async function linkDelByName(nl: Netlink, name: string): Promise<boolean> {
  const l = await linkByName(nl, name);
  if (!l) return false;
  try {
    await linkDel(nl, l.index);
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
  return true;
}

async function setLink(nl: Netlink, op: string, msg: { index: number; flags?: number; change?: number }, attrs: Buffer[] = []): Promise<void> {
  await request(nl, op, RTM.SETLINK, [ifinfo(msg), ...attrs]);
}

export const linkSetUp = (nl: Netlink, index: number) =>
  setLink(nl, `set link #${index} up`, { index, flags: IFF.UP, change: IFF.UP });
export const linkSetDown = (nl: Netlink, index: number) =>
  setLink(nl, `set link #${index} down`, { index, flags: 0, change: IFF.UP });
export const linkSetPromisc = (nl: Netlink, index: number, on: boolean) =>
  setLink(nl, `set link #${index} promisc ${on ? 'on' : 'off'}`, { index, flags: on ? IFF.PROMISC : 0, change: IFF.PROMISC });
export const linkSetMtu = (nl: Netlink, index: number, mtu: number) =>
  setLink(nl, `set link #${index} mtu ${mtu}`, { index }, [u32(IFLA.MTU, mtu)]);
export const linkSetMac = (nl: Netlink, index: number, mac: string) =>
  setLink(nl, `set link #${index} address ${mac}`, { index }, [bytes(IFLA.ADDRESS, macFromString(mac))]);
export const linkSetName = (nl: Netlink, index: number, name: string) =>
  setLink(nl, `rename link #${index} to ${name}`, { index }, [str(IFLA.IFNAME, name)]);
/** Sets IFLA_IFALIAS (shown by `ip link` as "alias"). */
export const linkSetAlias = (nl: Netlink, index: number, alias: string) =>
  setLink(nl, `set link #${index} alias`, { index }, [str(IFLA_X.IFALIAS, alias)]);
/** Puts the link in device group `group` (matched by nft `iifgroup`/`oifgroup`). */
export const linkSetGroup = (nl: Netlink, index: number, group: number) =>
  setLink(nl, `set link #${index} group ${group}`, { index }, [u32(IFLA_X.GROUP, group)]);
/** Enslaves to `master` (0 = release). */
export const linkSetMaster = (nl: Netlink, index: number, master: number) =>
  setLink(nl, `set link #${index} master #${master}`, { index }, [u32(IFLA.MASTER, master)]);
/** Moves the link into the namespace open at `fd`; it disappears from this socket's namespace. */
export const linkSetNetns = (nl: Netlink, index: number, fd: number) =>
  setLink(nl, `move link #${index} to namespace fd ${fd}`, { index }, [u32(IFLA.NET_NS_FD, fd)]);

export interface BridgePortFlags { hairpin?: boolean; learning?: boolean; unicastFlood?: boolean }

/** Sets bridge port options of an enslaved link (IFLA_INFO_SLAVE_DATA). */
export async function linkSetBridgePort(nl: Netlink, index: number, f: BridgePortFlags): Promise<void> {
  const data: Buffer[] = [];
  if (f.hairpin !== undefined) data.push(u8(IFLA_BRPORT.MODE, f.hairpin ? 1 : 0));
  if (f.learning !== undefined) data.push(u8(IFLA_BRPORT.LEARNING, f.learning ? 1 : 0));
  if (f.unicastFlood !== undefined) data.push(u8(IFLA_BRPORT.UNICAST_FLOOD, f.unicastFlood ? 1 : 0));
  if (!data.length) return;
  await request(nl, `set bridge port flags of link #${index}`, RTM.NEWLINK, [ifinfo({ index }), nla(IFLA.LINKINFO, slaveInfo('bridge', data), true)]);
}

/** Reads a bridge port's flags back (from IFLA_INFO_SLAVE_DATA). */
export function bridgePortFlags(l: Link): BridgePortFlags {
  const get = (t: number) => l.slaveData?.find((a) => a.type === t)?.value[0];
  const h = get(IFLA_BRPORT.MODE), le = get(IFLA_BRPORT.LEARNING), u = get(IFLA_BRPORT.UNICAST_FLOOD);
  return { hairpin: h === undefined ? undefined : h === 1, learning: le === undefined ? undefined : le === 1, unicastFlood: u === undefined ? undefined : u === 1 };
}
