/** Route verbs: replace, delete, list (main table; IPv4 and IPv6; onlink). */
import { dumpRaw, request, NotFoundError, type Netlink } from './socket';
import { afOf, familyOfAf, formatIp, networkOf, parseCidr, parseIp, formatCidr } from './ip';
import { bytes, findAttr, u32 } from './attrs';
import { NLM_F, RTA, RTM, decodeRtmsg, rtmsg, u32At } from './codec';

const RTNH_F_ONLINK = 4;
const RT_TABLE_MAIN = 254;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const RT_SCOPE_NOWHERE = 255;
const RTPROT_BOOT = 3;
const RTN_UNICAST = 1;

export interface Route {
  /** Destination CIDR, network form ("0.0.0.0/0", "10.1.0.0/24", "::/0"). */
  dst: string;
  gw?: string;
  /** Output link index. */
  oif?: number;
  family: 4 | 6;
  onlink?: boolean;
  metric?: number;
  table?: number;
  scope?: number;
  /** Kernel route protocol (2 = kernel-made prefix route). */
  protocol?: number;
  type?: number;
}

export interface RouteSpec { dst: string; gw?: string; oif?: number; onlink?: boolean; metric?: number; table?: number; scope?: 'link' | 'universe' }

function payload(r: RouteSpec, forDelete = false): Buffer[] {
  const dst = networkOf(parseCidr(r.dst));
  const gw = r.gw ? parseIp(r.gw) : undefined;
  if (gw && gw.family !== dst.family) throw new TypeError(`route ${r.dst}: gateway ${r.gw} is of another family`);
  const table = r.table ?? RT_TABLE_MAIN;
  const scope = forDelete ? RT_SCOPE_NOWHERE // matches a route of any scope
    : r.scope === 'link' || (!gw && r.scope !== 'universe') ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  const parts = [rtmsg({
    family: afOf(dst.family), dstLen: dst.prefix, table: table < 256 ? table : 0, protocol: RTPROT_BOOT, scope, type: RTN_UNICAST,
    flags: r.onlink ? RTNH_F_ONLINK : 0,
  })];
  if (dst.prefix > 0) parts.push(bytes(RTA.DST, dst.bytes));
  if (gw) parts.push(bytes(RTA.GATEWAY, gw.bytes));
  if (r.oif !== undefined) parts.push(u32(RTA.OIF, r.oif));
  if (r.metric !== undefined) parts.push(u32(RTA.PRIORITY, r.metric));
  if (table >= 256) parts.push(u32(RTA.TABLE, table));
  return parts;
}

const describe = (r: RouteSpec) => `${r.dst}${r.gw ? ` via ${r.gw}` : ''}${r.oif !== undefined ? ` dev #${r.oif}` : ''}`;

/** Adds or replaces a route (idempotent). */
export async function routeReplace(nl: Netlink, r: RouteSpec): Promise<void> {
  await request(nl, `replace route ${describe(r)}`, RTM.NEWROUTE, payload(r), NLM_F.CREATE | NLM_F.REPLACE);
}

/** Adds a route; ExistsError if an equal route exists. */
export async function routeAdd(nl: Netlink, r: RouteSpec): Promise<void> {
  await request(nl, `add route ${describe(r)}`, RTM.NEWROUTE, payload(r), NLM_F.CREATE | NLM_F.EXCL);
}

/** Deletes a route; returns false when it did not exist. */
export async function routeDel(nl: Netlink, r: RouteSpec): Promise<boolean> {
  try {
    await request(nl, `delete route ${describe(r)}`, RTM.DELROUTE, payload(r, true));
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}

/** Unicast routes of the main table (or `table`), optionally of one family / output link. */
export async function routeList(nl: Netlink, filter: { family?: 4 | 6; oif?: number; table?: number } = {}): Promise<Route[]> {
  const msgs = await dumpRaw(nl, 'list routes', RTM.GETROUTE, [rtmsg({ family: filter.family ? afOf(filter.family) : 0 })]);
  const want = filter.table ?? RT_TABLE_MAIN;
  const out: Route[] = [];
  for (const msg of msgs) {
    if (msg.type !== RTM.NEWROUTE) continue;
    const m = decodeRtmsg(msg.data);
    const table = u32At(m.attrs, RTA.TABLE) ?? m.table;
    if (table !== want || m.type !== RTN_UNICAST) continue;
    const family = familyOfAf(m.family);
    if (filter.family && family !== filter.family) continue;
    const oif = u32At(m.attrs, RTA.OIF);
    if (filter.oif !== undefined && oif !== filter.oif) continue;
    const gw = findAttr(m.attrs, RTA.GATEWAY);
    out.push({
      dst: formatCidr({ family, bytes: findAttr(m.attrs, RTA.DST) ?? Buffer.alloc(family === 4 ? 4 : 16), prefix: m.dstLen }),
      gw: gw ? formatIp(gw) : undefined,
      oif,
      family,
      onlink: (m.flags & RTNH_F_ONLINK) !== 0,
      metric: u32At(m.attrs, RTA.PRIORITY),
      table,
      scope: m.scope,
      protocol: m.protocol,
      type: m.type,
    });
  }
  return out;
}

export { RT_SCOPE_LINK, RT_SCOPE_UNIVERSE };
