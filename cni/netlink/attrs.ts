/**
 * Netlink attribute (TLV) encoding and decoding for the parts the `netlink`
 * package leaves as raw Buffers: IFLA_LINKINFO with its kind-specific
 * IFLA_INFO_DATA / IFLA_INFO_SLAVE_DATA, and veth's VETH_INFO_PEER (an
 * ifinfomsg followed by link attributes). Pure functions, no kernel access.
 */

export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

/** Constants from linux/if_link.h, veth.h and if_bridge.h that we use. */
export const IFLA = {
  ADDRESS: 1, IFNAME: 3, MTU: 4, LINK: 5, MASTER: 10, LINKINFO: 18, NET_NS_FD: 28,
} as const;
export const IFLA_INFO = { KIND: 1, DATA: 2, SLAVE_KIND: 4, SLAVE_DATA: 5 } as const;
export const VETH_INFO_PEER = 1;
export const IFLA_BRPORT = { MODE: 4, LEARNING: 8, UNICAST_FLOOD: 9 } as const;

export interface Attr { type: number; value: Buffer; nested?: boolean }

const align4 = (n: number) => (n + 3) & ~3;

/** One attribute: header, payload, padding to 4 bytes. */
export function nla(type: number, value: Buffer, nested = false): Buffer {
  const len = 4 + value.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE((type & NLA_TYPE_MASK) | (nested ? NLA_F_NESTED : 0), 2);
  value.copy(out, 4);
  return out;
}

export const nest = (type: number, children: Buffer[]): Buffer => nla(type, Buffer.concat(children), true);
export const str = (type: number, s: string): Buffer => nla(type, Buffer.from(`${s}\0`, 'utf8'));
export const u8 = (type: number, v: number): Buffer => nla(type, Buffer.from([v & 0xff]));
export function u32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return nla(type, b);
}
export const bytes = (type: number, b: Buffer): Buffer => nla(type, b);

/** Splits a buffer of attributes; malformed tails are ignored as the kernel does. */
export function parseAttrs(buf: Buffer): Attr[] {
  const out: Attr[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const rawType = buf.readUInt16LE(off + 2);
    if (len < 4 || off + len > buf.length) break;
    out.push({ type: rawType & NLA_TYPE_MASK, value: buf.subarray(off + 4, off + len), nested: (rawType & NLA_F_NESTED) !== 0 });
    off += align4(len);
  }
  return out;
}

export function findAttr(attrs: Attr[], type: number): Buffer | undefined {
  return attrs.find((a) => a.type === type)?.value;
}

export function readStr(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
}

/** struct ifinfomsg: family, pad, type, index, flags, change (16 bytes). */
export function ifinfomsg(o: { family?: number; index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(o.family ?? 0, 0);
  b.writeInt32LE(o.index ?? 0, 4);
  b.writeUInt32LE(o.flags ?? 0, 8);
  b.writeUInt32LE(o.change ?? 0, 12);
  return b;
}

/** Payload of IFLA_LINKINFO for a new link of `kind` with optional IFLA_INFO_DATA children. */
export function linkInfo(kind: string, data?: Buffer[]): Buffer {
  const parts = [str(IFLA_INFO.KIND, kind)];
  if (data && data.length) parts.push(nest(IFLA_INFO.DATA, data));
  return Buffer.concat(parts);
}

/** Payload of IFLA_LINKINFO that sets port options of a link enslaved to `slaveKind` (e.g. bridge). */
export function slaveInfo(slaveKind: string, data: Buffer[]): Buffer {
  return Buffer.concat([str(IFLA_INFO.SLAVE_KIND, slaveKind), nest(IFLA_INFO.SLAVE_DATA, data)]);
}

/** veth's IFLA_INFO_DATA child: the peer as an ifinfomsg plus its own attributes. */
export function vethPeer(peer: { name: string; netnsFd?: number; mtu?: number; mac?: Buffer }): Buffer {
  const attrs = [str(IFLA.IFNAME, peer.name)];
  if (peer.netnsFd !== undefined) attrs.push(u32(IFLA.NET_NS_FD, peer.netnsFd));
  if (peer.mtu !== undefined) attrs.push(u32(IFLA.MTU, peer.mtu));
  if (peer.mac) attrs.push(bytes(IFLA.ADDRESS, peer.mac));
  return nla(VETH_INFO_PEER, Buffer.concat([ifinfomsg(), ...attrs]), true);
}

/** Reads kind and slave kind back out of a link's IFLA_LINKINFO payload. */
export function parseLinkInfo(buf: Buffer | undefined): { kind?: string; slaveKind?: string; data?: Attr[]; slaveData?: Attr[] } {
  if (!buf) return {};
  const a = parseAttrs(buf);
  const data = findAttr(a, IFLA_INFO.DATA);
  const slaveData = findAttr(a, IFLA_INFO.SLAVE_DATA);
  return {
    kind: readStr(findAttr(a, IFLA_INFO.KIND)),
    slaveKind: readStr(findAttr(a, IFLA_INFO.SLAVE_KIND)),
    data: data ? parseAttrs(data) : undefined,
    slaveData: slaveData ? parseAttrs(slaveData) : undefined,
  };
}
