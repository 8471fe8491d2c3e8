/** Address verbs: add, delete, list (IPv4 and IPv6). */
import { dumpRaw, request, NotFoundError, type Netlink } from './socket';
import { afOf, familyOfAf, formatIp, parseCidr, type Cidr } from './ip';
import { bytes, findAttr, u32 } from './attrs';
import { IFA, IFA_F, NLM_F, RTM, decodeIfaddr, ifaddr } from './codec';

export interface Address { index: number; cidr: string; family: 4 | 6; scope: number }

export interface AddrAddOptions {
  /** Skip IPv6 duplicate address detection (a fresh veth cannot collide; DAD delays use by seconds). */
  noDad?: boolean;
  /** Do not install the prefix route (callers that manage routes themselves). */
  noPrefixRoute?: boolean;
}

function payload(index: number, c: Cidr, o: AddrAddOptions = {}): Buffer[] {
  const parts = [ifaddr({ family: afOf(c.family), prefixlen: c.prefix, index }), bytes(IFA.LOCAL, c.bytes), bytes(IFA.ADDRESS, c.bytes)];
  let flags = 0;
  if (o.noDad && c.family === 6) flags |= IFA_F.NODAD;
  if (o.noPrefixRoute) flags |= IFA_F.NOPREFIXROUTE;
  if (flags) parts.push(u32(IFA.FLAGS, flags));
  if (c.family === 4 && c.prefix < 31) {
    // Broadcast address: the kernel does not derive it for netlink callers.
    const b = Buffer.from(c.bytes);
    for (let i = 0; i < 4; i++) {
      const bits = Math.max(0, Math.min(8, c.prefix - i * 8));
      b[i] |= ~((0xff << (8 - bits)) & 0xff) & 0xff;
    }
    parts.push(bytes(IFA.BROADCAST, b));
  }
  return parts;
}

/** Adds `cidr` (e.g. "10.1.0.1/24") to link `index`; ExistsError if already present. */
export async function addrAdd(nl: Netlink, index: number, cidr: string, o: AddrAddOptions = {}): Promise<void> {
  await request(nl, `add address ${cidr} to link #${index}`, RTM.NEWADDR, payload(index, parseCidr(cidr), o), NLM_F.CREATE | NLM_F.EXCL);
}

/** Removes `cidr` from link `index`; returns false when it was not there. */
export async function addrDel(nl: Netlink, index: number, cidr: string): Promise<boolean> {
  const c = parseCidr(cidr);
  try {
    await request(nl, `delete address ${cidr} from link #${index}`, RTM.DELADDR,
      [ifaddr({ family: afOf(c.family), prefixlen: c.prefix, index }), bytes(IFA.LOCAL, c.bytes), bytes(IFA.ADDRESS, c.bytes)]);
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}

/** Addresses in this namespace, optionally of one link and/or family. */
export async function addrList(nl: Netlink, filter: { index?: number; family?: 4 | 6 } = {}): Promise<Address[]> {
  const msgs = await dumpRaw(nl, 'list addresses', RTM.GETADDR, [ifaddr({ family: filter.family ? afOf(filter.family) : 0 })]);
  const out: Address[] = [];
  for (const msg of msgs) {
    if (msg.type !== RTM.NEWADDR) continue;
    const m = decodeIfaddr(msg.data);
    if (filter.index !== undefined && m.index !== filter.index) continue;
    const addr = findAttr(m.attrs, IFA.LOCAL) ?? findAttr(m.attrs, IFA.ADDRESS);
    if (!addr) continue;
    const family = familyOfAf(m.family);
    if (filter.family && family !== filter.family) continue;
    out.push({ index: m.index, family, scope: m.scope, cidr: `${formatIp(addr)}/${m.prefixlen}` });
  }
  return out;
}
