/**
 * Pod-subnet leases of the overlay. A node claims one subnet per cluster CIDR
 * with compare-and-set on `keys.subnet`, so two nodes never hold the same one,
 * and attaches it to its lease, so a dead node's subnet frees itself. A node
 * that comes back first re-claims the subnet it remembers (or still holds).
 */
import { keys } from '../store/keys';
import type { Store } from '../store/types';
import type { SubnetLease } from '../store/records';
import { MeshworkError, withContext } from '../lib/errors';
import { formatNet, netContains, parseNet, startIndex, subnetAt, subnetCount, type Net } from './subnet-math';
import { parseSubnetLease } from './records';

export class SubnetsExhaustedError extends MeshworkError {
  constructor(network: string, cluster: string, len: number) {
    super('ESUBNETS_EXHAUSTED', `network ${network}: every /${len} subnet of ${cluster} is leased to another node`);
  }
}

export interface ClaimRequest {
  store: Store;
  network: string;
  cluster: Net;
  subnetLen: number;
  node: string;
  leaseId: string;
  /** Subnets this node used before (from its local state), tried first. */
  remembered?: string[];
}

interface Held { subnet: string; key: string; modRevision: number; owner: string }

/** Claims (or re-claims) this node's subnet in `cluster`; returns it in CIDR form. */
export async function claimSubnet(r: ClaimRequest): Promise<string> {
  try {
    return await claim(r);
  } catch (err) {
    if (err instanceof SubnetsExhaustedError) throw err;
    throw withContext(`network ${r.network}: lease a /${r.subnetLen} of ${formatNet(r.cluster)}`, err);
  }
}

async function claim(r: ClaimRequest): Promise<string> {
  const value = (subnet: string) => JSON.stringify({ network: r.network, subnet, node: r.node } satisfies SubnetLease);
  const fits = (cidr: string) => {
    try {
      const n = parseNet(cidr);
      return n.prefix === r.subnetLen && netContains(r.cluster, n);
    } catch { return false; }
  };
  for (let round = 0; round < 8; round++) {
    const listing = await r.store.list(keys.subnets(r.network));
    const held = new Map<string, Held>();
    for (const kv of listing.items) {
      const p = parseSubnetLease(kv.value);
      if (!p.ok) continue;
      held.set(p.value.subnet, { subnet: p.value.subnet, key: kv.key, modRevision: kv.modRevision, owner: p.value.node });
    }
    const mine = [...held.values()].filter((h) => h.owner === r.node && fits(h.subnet)).map((h) => h.subnet);
    const preferred = [...(r.remembered ?? []).filter(fits), ...mine];
    let raced = false;
    for (const subnet of new Set(preferred)) {
      const h = held.get(subnet);
      if (h && h.owner !== r.node) continue; // taken by someone else while we were away
      const ok = await r.store.cas(keys.subnet(r.network, subnet), h ? h.modRevision : 0, value(subnet), { lease: r.leaseId });
      if (ok) {
        await releaseOthers(r, held, subnet, fits);
        return subnet;
      }
      raced = true;
    }
    if (raced) continue; // our own record changed under us: look again
    const count = subnetCount(r.cluster, r.subnetLen);
    const start = startIndex(r.node, count);
    for (let i = 0; i < count; i++) {
      const subnet = formatNet(subnetAt(r.cluster, r.subnetLen, (start + i) % count));
      if (held.has(subnet)) continue;
      if (await r.store.cas(keys.subnet(r.network, subnet), 0, value(subnet), { lease: r.leaseId })) return subnet;
    }
    if (held.size >= count) break;
  }
  throw new SubnetsExhaustedError(r.network, formatNet(r.cluster), r.subnetLen);
}

/** Drops other subnets of the same cluster CIDR this node still holds (e.g. from before a re-size). */
async function releaseOthers(r: ClaimRequest, held: Map<string, Held>, keep: string, fits: (c: string) => boolean): Promise<void> {
  for (const h of held.values()) {
    if (h.owner !== r.node || h.subnet === keep) continue;
    let inCluster = false;
    try { inCluster = netContains(r.cluster, parseNet(h.subnet)); } catch { /* not ours to judge */ }
    if (inCluster || fits(h.subnet)) await r.store.cas(h.key, h.modRevision, null);
  }
}

/** Hands the subnet back (decommission). */
export async function releaseSubnet(store: Store, network: string, subnet: string, node: string): Promise<void> {
  const kv = await store.get(keys.subnet(network, subnet));
  if (!kv) return;
  const p = parseSubnetLease(kv.value);
  if (p.ok && p.value.node === node) await store.cas(kv.key, kv.modRevision, null);
}
