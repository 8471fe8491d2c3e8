/**
 * From node records to the kernel state this host should have: pure. For each
 * other node on the network, flannel-style: a route to its pod subnet via its
 * VTEP address onlink, a permanent neighbour VTEP address -> VTEP MAC, and an
 * FDB entry VTEP MAC -> its underlay address.
 */
import type { NodeRecord } from '../store/records';
import { addrAt, formatNet, netContains, parseNet, type Net } from './subnet-math';

export interface Peer { node: string; underlay: string; vtepMac: string; subnets: string[] }

export interface RouteWant { dst: string; gw: string }
export interface NeighWant { ip: string; mac: string }
export interface FdbWant { mac: string; dst: string }

export interface OverlayState {
  routes: RouteWant[];
  neighs: NeighWant[];
  fdb: FdbWant[];
}

/** A peer's VTEP address in one of its subnets: the subnet's network address. */
export const vtepAddress = (subnet: string): string => addrAt(parseNet(subnet), 0);

export interface SkippedPeer { node: string; reason: string }

/**
 * The peers of `self` on `network`: nodes with a VTEP MAC and subnets inside
 * the cluster CIDRs. Conflicts (two nodes claiming one subnet or MAC, which
 * the store's CAS prevents but a hand edit could cause) resolve by node name
 * so every host picks the same winner.
 */
export function peersOf(records: NodeRecord[], self: string, network: string, clusters: Net[]): { peers: Peer[]; skipped: SkippedPeer[] } {
  const peers: Peer[] = [];
  const skipped: SkippedPeer[] = [];
  const takenSubnets = new Set<string>();
  const takenMacs = new Set<string>();
  // Our own subnets are never routed into the tunnel: a peer claiming one would
  // otherwise replace the bridge's connected route and cut off our own pods.
  const me = records.find((r) => r.name === self);
  for (const s of me?.podSubnets?.[network] ?? []) { try { takenSubnets.add(formatNet(parseNet(s))); } catch { /* ours, validated at claim */ } }
  if (me?.vtepMac) takenMacs.add(me.vtepMac.toLowerCase());
  for (const r of [...records].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (r.name === self) continue;
    const raw = r.podSubnets?.[network];
    if (!raw || raw.length === 0) continue; // not on this network
    if (!r.vtepMac) { skipped.push({ node: r.name, reason: 'no VTEP MAC' }); continue; }
    const mac = r.vtepMac.toLowerCase();
    if (takenMacs.has(mac)) { skipped.push({ node: r.name, reason: `VTEP MAC ${mac} already used by another node` }); continue; }
    const subnets: string[] = [];
    for (const s of raw) {
      let n: Net;
      try { n = parseNet(s); } catch { skipped.push({ node: r.name, reason: `bad subnet ${s}` }); continue; }
      const norm = formatNet(n);
      if (!clusters.some((c) => netContains(c, n))) { skipped.push({ node: r.name, reason: `subnet ${norm} outside the cluster CIDR` }); continue; }
      if (takenSubnets.has(norm)) { skipped.push({ node: r.name, reason: `subnet ${norm} already used by another node` }); continue; }
      subnets.push(norm);
    }
    if (subnets.length === 0) continue;
    subnets.forEach((s) => takenSubnets.add(s));
    takenMacs.add(mac);
    peers.push({ node: r.name, underlay: r.underlay, vtepMac: mac, subnets });
  }
  return { peers, skipped };
}

export function desiredState(peers: Peer[]): OverlayState {
  const out: OverlayState = { routes: [], neighs: [], fdb: [] };
  for (const p of peers) {
    out.fdb.push({ mac: p.vtepMac, dst: p.underlay });
    for (const s of p.subnets) {
      const gw = vtepAddress(s);
      out.neighs.push({ ip: gw, mac: p.vtepMac });
      out.routes.push({ dst: s, gw });
    }
  }
  return out;
}
