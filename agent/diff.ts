/**
 * The difference between the overlay state a host has and the one it should
 * have, as the smallest set of kernel operations: pure. Entries that are
 * already right produce nothing, which is what makes a restart a no-op.
 */
import type { FdbWant, NeighWant, OverlayState, RouteWant } from './peers';

export interface Plan {
  fdbSet: FdbWant[];
  neighSet: NeighWant[];
  routeSet: RouteWant[];
  routeDel: RouteWant[];
  neighDel: Array<{ ip: string }>;
  fdbDel: FdbWant[];
}

export const planSize = (p: Plan): number =>
  p.fdbSet.length + p.neighSet.length + p.routeSet.length + p.routeDel.length + p.neighDel.length + p.fdbDel.length;

/** Actual routes must have been read with `onlink` already checked (see kernel.ts). */
export function diff(actual: OverlayState, want: OverlayState): Plan {
  const plan: Plan = { fdbSet: [], neighSet: [], routeSet: [], routeDel: [], neighDel: [], fdbDel: [] };

  const wantRoute = new Map(want.routes.map((r) => [r.dst, r]));
  const haveRoute = new Map<string, RouteWant[]>();
  for (const r of actual.routes) haveRoute.set(r.dst, [...(haveRoute.get(r.dst) ?? []), r]);
  for (const r of want.routes) {
    const have = haveRoute.get(r.dst) ?? [];
    if (!have.some((h) => h.gw === r.gw)) plan.routeSet.push(r);
  }
  for (const r of actual.routes) {
    const w = wantRoute.get(r.dst);
    if (!w || (w.gw !== r.gw && !plan.routeSet.some((s) => s.dst === r.dst))) plan.routeDel.push(r);
  }

  const wantNeigh = new Map(want.neighs.map((n) => [n.ip, n.mac]));
  const haveNeigh = new Map(actual.neighs.map((n) => [n.ip, n.mac]));
  for (const n of want.neighs) if (haveNeigh.get(n.ip) !== n.mac) plan.neighSet.push(n);
  for (const n of actual.neighs) if (!wantNeigh.has(n.ip)) plan.neighDel.push({ ip: n.ip });

  const wantFdb = new Map(want.fdb.map((f) => [f.mac, f.dst]));
  const haveFdb = new Set(actual.fdb.map((f) => `${f.mac}|${f.dst}`));
  for (const f of want.fdb) if (!haveFdb.has(`${f.mac}|${f.dst}`)) plan.fdbSet.push(f);
  for (const f of actual.fdb) {
    const w = wantFdb.get(f.mac);
    // A replace moves an entry's remote in place; only stray remotes need deleting.
    if (w === undefined || (w !== f.dst && actual.fdb.filter((g) => g.mac === f.mac).length > 1)) plan.fdbDel.push(f);
  }
  return plan;
}
