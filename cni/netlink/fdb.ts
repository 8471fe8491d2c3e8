/**
 * Forwarding-database verbs of a VXLAN device (AF_BRIDGE neighbour messages
 * with NTF_SELF, as `bridge fdb ... self` sends): "frames for this MAC go in
 * a VXLAN packet to this underlay address". Without learning, these entries
 * are the only way the device knows where a peer's VTEP lives.
 */
import { AttrStream, FlagsNew, rt } from 'netlink';
import { call, dump, NotFoundError, type Netlink } from './socket';
import { formatIp, parseIp } from './ip';
import { macFromString, macToString } from './link';
import { NUD_PERMANENT } from './neigh';

export const AF_BRIDGE = 7;

export interface FdbEntry {
  ifindex: number;
  mac: string;
  /** Remote underlay address (NDA_DST); undefined for local/bridge entries. */
  dst?: string;
  permanent: boolean;
  /** NTF_SELF: the entry lives in the device's own table (vxlan), not a bridge master's. */
  self: boolean;
}

/** FDB entries of link `ifindex` (all links when omitted). */
export async function fdbList(nl: Netlink, filter: { ifindex?: number } = {}): Promise<FdbEntry[]> {
  const s = new AttrStream();
  rt.formatNeighborMessage({ kind: 'neighbor', data: { family: AF_BRIDGE, ifindex: filter.ifindex }, attrs: {} }, s);
  const msgs = await dump(nl, 'list fdb', rt.MessageType.GETNEIGH, s.bufs);
  const out: FdbEntry[] = [];
  for (const m of msgs) {
    if (m.kind !== 'neighbor' || m.data.family !== AF_BRIDGE) continue;
    const ifindex = m.data.ifindex ?? 0;
    if (filter.ifindex !== undefined && ifindex !== filter.ifindex) continue;
    const mac = macToString(m.attrs.lladdr);
    if (!mac) continue;
    const state = m.data.state ? rt.formatNeighborState(m.data.state) : 0;
    out.push({
      ifindex,
      mac,
      dst: m.attrs.dst ? formatIp(m.attrs.dst) : undefined,
      permanent: (state & NUD_PERMANENT) !== 0,
      self: !!m.data.flags?.self,
    });
  }
  return out;
}

/**
 * Points `mac` at underlay address `dst` on VXLAN link `ifindex`, creating the
 * entry or moving it (REPLACE changes the remote of an existing MAC in place).
 */
export async function fdbReplace(nl: Netlink, e: { ifindex: number; mac: string; dst: string }): Promise<void> {
  await call(`replace fdb ${e.mac} dst ${e.dst} on link #${e.ifindex}`, () =>
    nl.rt.newNeighbor(
      { family: AF_BRIDGE, ifindex: e.ifindex, state: { permanent: true }, flags: { self: true } },
      { lladdr: macFromString(e.mac), dst: parseIp(e.dst).bytes },
      { flags: FlagsNew.CREATE | FlagsNew.REPLACE },
    ));
}

/** Removes the entry for `mac` (and `dst` when given); false when it was not there. */
export async function fdbDel(nl: Netlink, e: { ifindex: number; mac: string; dst?: string }): Promise<boolean> {
  const attrs: rt.NeighborAttrs = { lladdr: macFromString(e.mac) };
  if (e.dst) attrs.dst = parseIp(e.dst).bytes;
  try {
    await call(`delete fdb ${e.mac} on link #${e.ifindex}`, () =>
      nl.rt.delNeighbor({ family: AF_BRIDGE, ifindex: e.ifindex, flags: { self: true } }, attrs));
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}
