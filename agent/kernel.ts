/**
 * Reads the overlay state of the VXLAN device from the kernel and applies a
 * plan to it, through cni/netlink only. Additions go FDB -> neighbour ->
 * route (a route never points at a hop the kernel cannot resolve), removals
 * the other way. Every operation is tried; failures are collected and
 * reported together so one bad peer never blocks the others.
 */
import { fdbDel, fdbList, fdbReplace } from '../cni/netlink/fdb';
import { neighDel, neighList, neighReplace } from '../cni/netlink/neigh';
import { routeDel, routeList, routeReplace } from '../cni/netlink/route';
import type { Netlink } from '../cni/netlink/socket';
import { MeshworkError } from '../lib/errors';
import type { Plan } from './diff';
import type { OverlayState } from './peers';
import { ipIn, type Net } from './subnet-math';

/**
 * What we manage on the device: onlink gateway routes, permanent neighbours
 * and remote FDB entries. Kernel-made entries (prefix routes, link-local
 * neighbours, the device's own MAC) are left alone.
 */
export async function readOverlay(nl: Netlink, ifindex: number, clusters: Net[]): Promise<OverlayState> {
  // One dump at a time: concurrent dumps on one socket interleave their parts.
  const routes = await routeList(nl, { oif: ifindex });
  const neighs = await neighList(nl, { ifindex });
  const fdb = await fdbList(nl, { ifindex });
  return {
    routes: routes.filter((r) => r.gw && clusters.some((c) => ipIn(c, r.gw!))).map((r) => ({ dst: r.dst, gw: r.onlink ? r.gw! : `${r.gw} (not onlink)` })),
    neighs: neighs.filter((n) => n.permanent && n.mac).map((n) => ({ ip: n.ip, mac: n.mac! })),
    fdb: fdb.filter((f) => f.self && f.dst && f.mac !== '00:00:00:00:00:00').map((f) => ({ mac: f.mac, dst: f.dst! })),
  };
}

export class ReconcileError extends MeshworkError {
  constructor(readonly failures: Error[]) {
    super('ERECONCILE', `${failures.length} overlay change(s) failed: ${failures.map((f) => f.message).join('; ')}`, { cause: failures[0] });
  }
}

export interface ApplyCounts { added: number; removed: number }

export async function applyPlan(nl: Netlink, ifindex: number, plan: Plan): Promise<ApplyCounts> {
  const failures: Error[] = [];
  const counts = { added: 0, removed: 0 };
  const attempt = async (fn: () => Promise<unknown>, kind: 'added' | 'removed') => {
    try { await fn(); counts[kind]++; } catch (err) { failures.push(err as Error); }
  };
  for (const f of plan.fdbSet) await attempt(() => fdbReplace(nl, { ifindex, mac: f.mac, dst: f.dst }), 'added');
  for (const n of plan.neighSet) await attempt(() => neighReplace(nl, { ifindex, ip: n.ip, mac: n.mac }), 'added');
  for (const r of plan.routeSet) await attempt(() => routeReplace(nl, { dst: r.dst, gw: r.gw, oif: ifindex, onlink: true }), 'added');
  for (const r of plan.routeDel) await attempt(() => routeDel(nl, { dst: r.dst, oif: ifindex }), 'removed');
  for (const n of plan.neighDel) await attempt(() => neighDel(nl, { ifindex, ip: n.ip }), 'removed');
  for (const f of plan.fdbDel) await attempt(() => fdbDel(nl, { ifindex, mac: f.mac, dst: f.dst }), 'removed');
  if (failures.length) throw new ReconcileError(failures);
  return counts;
}
