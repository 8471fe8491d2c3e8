/**
 * rtnetlink message bodies for links, addresses and routes, encoded and
 * decoded here rather than by the package's generated structs (which cost
 * ~100 ms to load on every plugin start). Pure functions over Buffers.
 * Layouts: linux/rtnetlink.h (ifinfomsg, ifaddrmsg, rtmsg), if_link.h, if_addr.h.
 */
import { parseAttrs, findAttr, readStr, type Attr } from './attrs';

export const RTM = {
  NEWLINK: 16, DELLINK: 17, GETLINK: 18, SETLINK: 19,
  NEWADDR: 20, DELADDR: 21, GETADDR: 22,
  NEWROUTE: 24, DELROUTE: 25, GETROUTE: 26,
} as const;
export const NLM_F = { REPLACE: 0x100, EXCL: 0x200, CREATE: 0x400 } as const;
export const IFF = { UP: 0x1, PROMISC: 0x100 } as const;
export const IFLA_X = { IFALIAS: 20, GROUP: 27, EXT_MASK: 29 } as const;
export const IFA = { ADDRESS: 1, LOCAL: 2, BROADCAST: 4, FLAGS: 8 } as const;
export const IFA_F = { NODAD: 0x02, NOPREFIXROUTE: 0x200 } as const;
export const RTA = { DST: 1, OIF: 4, GATEWAY: 5, PRIORITY: 6, TABLE: 15 } as const;

/** struct ifinfomsg (16 bytes). */
export function ifinfo(o: { family?: number; type?: number; index?: number; flags?: number; change?: number } = {}): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(o.family ?? 0, 0);
  b.writeUInt16LE(o.type ?? 0, 2);
  b.writeInt32LE(o.index ?? 0, 4);
  b.writeUInt32LE(o.flags ?? 0, 8);
  b.writeUInt32LE(o.change ?? 0, 12);
  return b;
}
export interface IfInfo { family: number; type: number; index: number; flags: number; attrs: Attr[] }
export function decodeIfinfo(data: Buffer): IfInfo {
  return {
    family: data.readUInt8(0), type: data.readUInt16LE(2), index: data.readInt32LE(4), flags: data.readUInt32LE(8),
    attrs: parseAttrs(data.subarray(16)),
  };
}

/** struct ifaddrmsg (8 bytes). */
export function ifaddr(o: { family: number; prefixlen?: number; flags?: number; scope?: number; index?: number }): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(o.family, 0);
  b.writeUInt8(o.prefixlen ?? 0, 1);
  b.writeUInt8((o.flags ?? 0) & 0xff, 2);
  b.writeUInt8(o.scope ?? 0, 3);
  b.writeUInt32LE(o.index ?? 0, 4);
  return b;
}
export interface IfAddr { family: number; prefixlen: number; flags: number; scope: number; index: number; attrs: Attr[] }
export function decodeIfaddr(data: Buffer): IfAddr {
  return {
    family: data.readUInt8(0), prefixlen: data.readUInt8(1), flags: data.readUInt8(2), scope: data.readUInt8(3), index: data.readUInt32LE(4),
    attrs: parseAttrs(data.subarray(8)),
  };
}

/** struct rtmsg (12 bytes). */
export interface RtMsg { family: number; dstLen: number; srcLen: number; tos: number; table: number; protocol: number; scope: number; type: number; flags: number }
export function rtmsg(o: Partial<RtMsg> & { family: number }): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(o.family, 0);
  b.writeUInt8(o.dstLen ?? 0, 1);
  b.writeUInt8(o.srcLen ?? 0, 2);
  b.writeUInt8(o.tos ?? 0, 3);
  b.writeUInt8(o.table ?? 0, 4);
  b.writeUInt8(o.protocol ?? 0, 5);
  b.writeUInt8(o.scope ?? 0, 6);
  b.writeUInt8(o.type ?? 0, 7);
  b.writeUInt32LE(o.flags ?? 0, 8);
  return b;
}
export function decodeRtmsg(data: Buffer): RtMsg & { attrs: Attr[] } {
  return {
    family: data.readUInt8(0), dstLen: data.readUInt8(1), srcLen: data.readUInt8(2), tos: data.readUInt8(3), table: data.readUInt8(4),
    protocol: data.readUInt8(5), scope: data.readUInt8(6), type: data.readUInt8(7), flags: data.readUInt32LE(8),
    attrs: parseAttrs(data.subarray(12)),
  };
}

export const u32At = (attrs: Attr[], type: number): number | undefined => {
  const v = findAttr(attrs, type);
  return v && v.length >= 4 ? v.readUInt32LE(0) : undefined;
};
export const strAt = (attrs: Attr[], type: number): string | undefined => readStr(findAttr(attrs, type));
export { findAttr };
