/**
 * Neighbour (ARP/NDP) verbs for the overlay: permanent entries that tell the
 * kernel the MAC behind a peer's VTEP address, so it never has to ask (the
 * VXLAN device is created without learning and nobody would answer).
 */
import { AttrStream, FlagsNew, rt } from 'netlink';
import { call, dump, NotFoundError, type Netlink } from './socket';
import { afOf, familyOfAf, formatIp, parseIp } from './ip';
import { macFromString, macToString } from './link';

/** linux/neighbour.h NUD_* states and NTF_* flags we read or write. */
export const NUD_PERMANENT = 0x80;
export const NUD_NOARP = 0x40;
export const NTF_SELF = 0x02;

export interface Neigh {
  ifindex: number;
  family: 4 | 6;
  ip: string;
  mac?: string;
  /** NUD_* bitmask as the kernel reports it. */
  state: number;
  permanent: boolean;
}

function stateBits(s: rt.NeighborState | undefined): number {
  return s ? rt.formatNeighborState(s) : 0;
}

/** Neighbour entries of IPv4/IPv6, optionally of one link and family. */
export async function neighList(nl: Netlink, filter: { ifindex?: number; family?: 4 | 6 } = {}): Promise<Neigh[]> {
  const families: Array<4 | 6> = filter.family ? [filter.family] : [4, 6];
  const out: Neigh[] = [];
  for (const family of families) {
    const s = new AttrStream();
    rt.formatNeighborMessage({ kind: 'neighbor', data: { family: afOf(family), ifindex: filter.ifindex }, attrs: {} }, s);
    const msgs = await dump(nl, `list IPv${family} neighbours`, rt.MessageType.GETNEIGH, s.bufs);
    for (const m of msgs) {
      if (m.kind !== 'neighbor' || !m.attrs.dst) continue;
      if (familyOfAf(m.data.family ?? 0) !== family || (m.data.family ?? 0) !== afOf(family)) continue;
      const ifindex = m.data.ifindex ?? 0;
      if (filter.ifindex !== undefined && ifindex !== filter.ifindex) continue;
      const state = stateBits(m.data.state);
      out.push({ ifindex, family, ip: formatIp(m.attrs.dst), mac: macToString(m.attrs.lladdr), state, permanent: (state & NUD_PERMANENT) !== 0 });
    }
  }
  return out;
}

/** Creates or overwrites a permanent entry `ip -> mac` on link `ifindex`. */
export async function neighReplace(nl: Netlink, n: { ifindex: number; ip: string; mac: string }): Promise<void> {
  const ip = parseIp(n.ip);
  await call(`replace neighbour ${n.ip} lladdr ${n.mac} on link #${n.ifindex}`, () =>
    nl.rt.newNeighbor(
      { family: afOf(ip.family), ifindex: n.ifindex, state: { permanent: true } },
      { dst: ip.bytes, lladdr: macFromString(n.mac) },
      { flags: FlagsNew.CREATE | FlagsNew.REPLACE },
    ));
}

/** Removes the entry for `ip` on link `ifindex`; false when it was not there. */
export async function neighDel(nl: Netlink, n: { ifindex: number; ip: string }): Promise<boolean> {
  const ip = parseIp(n.ip);
  try {
    await call(`delete neighbour ${n.ip} on link #${n.ifindex}`, () =>
      nl.rt.delNeighbor({ family: afOf(ip.family), ifindex: n.ifindex }, { dst: ip.bytes }));
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}
