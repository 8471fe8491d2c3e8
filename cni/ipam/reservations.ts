/**
 * What ADD, DEL, CHECK and GC do to a network's reservation document. Pure
 * functions from state to new state: the store decides how that is locked
 * and persisted, the allocator decides which address is next.
 */
import { type Ip, type RangeSet, formatCidr, formatIp, isAllocatable, nextFree, parseIp, rangeFor } from './allocator';
import type { IpamConfig } from './config';
import { IpamAddressInUseError, IpamCheckError, IpamConfigError, IpamExhaustedError } from './errors';
import type { Allocation, IpamState, UpdateOutcome } from './store';

export interface AttachmentKey { containerID: string; ifname: string }
export interface AllocatedIp { address: string; gateway?: string }

const sameKey = (a: AttachmentKey, b: AttachmentKey): boolean => a.containerID === b.containerID && a.ifname === b.ifname;
const describe = (a: AttachmentKey): string => `container ${a.containerID} interface ${a.ifname}`;

/** Stable identity of a range set in the state document (for `lastReserved`). */
export function rangeSetKey(set: RangeSet): string {
  return set.map((r) => `${formatCidr(r.subnet)}:${formatIp({ family: r.subnet.family, value: r.start })}-${formatIp({ family: r.subnet.family, value: r.end })}`).join(',');
}

/** The result entry for `ip` handed out from `set`. */
function toResult(set: RangeSet, ip: Ip): AllocatedIp {
  const range = rangeFor(set, ip) ?? set[0];
  const out: AllocatedIp = { address: `${formatIp(ip)}/${range.subnet.prefix}` };
  if (range.gateway !== undefined) out.gateway = formatIp({ family: ip.family, value: range.gateway });
  return out;
}

function takenValues(state: IpamState): { 4: Set<bigint>; 6: Set<bigint> } {
  const taken = { 4: new Set<bigint>(), 6: new Set<bigint>() };
  for (const a of state.allocations) {
    for (const text of a.ips) {
      const ip = parseIp(text);
      if (ip) taken[ip.family].add(ip.value);
    }
  }
  return taken;
}

function ownerOf(state: IpamState, ip: Ip): Allocation | undefined {
  const text = formatIp(ip);
  return state.allocations.find((a) => a.ips.includes(text));
}

/** ADD: one address per range set; the same key always gets its existing addresses back. */
export function allocate(state: IpamState, cfg: IpamConfig, key: AttachmentKey): UpdateOutcome<AllocatedIp[]> {
  const existing = state.allocations.find((a) => sameKey(a, key));
  if (existing) {
    const ips = existing.ips.map((t) => parseIp(t));
    if (ips.length === cfg.rangeSets.length && ips.every((ip, i) => ip && rangeFor(cfg.rangeSets[i], ip))) {
      return { value: ips.map((ip, i) => toResult(cfg.rangeSets[i], ip!)) };
    }
    // The config changed under a live attachment: give it addresses from the new ranges.
    state = { ...state, allocations: state.allocations.filter((a) => a !== existing) };
  }

  for (const r of cfg.requested) {
    if (!cfg.rangeSets.some((set) => rangeFor(set, r.ip))) {
      throw new IpamConfigError(r.field, `${r.text} is not inside any range of ipam.ranges`);
    }
  }

  const taken = takenValues(state);
  const lastReserved = { ...state.lastReserved };
  const chosen: Ip[] = [];
  cfg.rangeSets.forEach((set, i) => {
    const family = set[0].subnet.family;
    const wanted = cfg.requested.filter((r) => rangeFor(set, r.ip));
    if (wanted.length > 1) {
      throw new IpamConfigError(wanted[1].field, `${wanted[1].text} and ${wanted[0].text} both fall in ipam.ranges[${i}]; one address per range set`);
    }
    let ip: Ip;
    if (wanted.length === 1) {
      const r = wanted[0];
      if (!isAllocatable(set, r.ip)) throw new IpamConfigError(r.field, `${r.text} is the gateway of ipam.ranges[${i}]`);
      if (taken[family].has(r.ip.value)) {
        const owner = ownerOf(state, r.ip);
        throw new IpamAddressInUseError(r.field, formatIp(r.ip), owner ? describe(owner) : 'another attachment');
      }
      ip = r.ip;
    } else {
      const k = rangeSetKey(set);
      const after = lastReserved[k] !== undefined ? parseIp(lastReserved[k]) : undefined;
      const v = nextFree(set, taken[family], after?.family === family ? after.value : undefined);
      if (v === undefined) {
        const ranges = set.map((r) => `${formatIp({ family, value: r.start })}-${formatIp({ family, value: r.end })}`).join(', ');
        throw new IpamExhaustedError(cfg.network, `ipam.ranges[${i}] (${ranges})`, state.allocations.length);
      }
      ip = { family, value: v };
      lastReserved[k] = formatIp(ip);
    }
    taken[family].add(ip.value);
    chosen.push(ip);
  });

  const allocation: Allocation = { containerID: key.containerID, ifname: key.ifname, ips: chosen.map(formatIp) };
  return {
    state: { allocations: [...state.allocations, allocation], lastReserved },
    value: chosen.map((ip, i) => toResult(cfg.rangeSets[i], ip)),
  };
}

/** DEL: frees the key's addresses; nothing to free is success (and writes nothing). */
export function release(state: IpamState, key: AttachmentKey): UpdateOutcome<string[]> {
  const gone = state.allocations.filter((a) => sameKey(a, key));
  if (gone.length === 0) return { value: [] };
  return {
    state: { ...state, allocations: state.allocations.filter((a) => !sameKey(a, key)) },
    value: gone.flatMap((a) => a.ips),
  };
}

/** GC: frees every allocation whose attachment is not in `valid`. */
export function collect(state: IpamState, valid: readonly AttachmentKey[]): UpdateOutcome<Allocation[]> {
  const keep = (a: Allocation): boolean => valid.some((v) => sameKey(v, a));
  const freed = state.allocations.filter((a) => !keep(a));
  if (freed.length === 0) return { value: [] };
  return { state: { ...state, allocations: state.allocations.filter(keep) }, value: freed };
}

/** CHECK: the key still holds one valid address per range set (and the ones in prevResult, if given). */
export function verify(state: IpamState, cfg: IpamConfig, key: AttachmentKey, expected?: string[]): AllocatedIp[] {
  const a = state.allocations.find((x) => sameKey(x, key));
  if (!a) throw new IpamCheckError(`network ${cfg.network}: no address is allocated to ${describe(key)}`);
  const ips = a.ips.map((t) => parseIp(t));
  if (ips.length !== cfg.rangeSets.length || ips.some((ip, i) => !ip || !rangeFor(cfg.rangeSets[i], ip))) {
    throw new IpamCheckError(`network ${cfg.network}: ${describe(key)} holds ${a.ips.join(', ')}, which no longer match ipam.ranges`);
  }
  const results = ips.map((ip, i) => toResult(cfg.rangeSets[i], ip!));
  for (const want of expected ?? []) {
    const bare = want.split('/')[0];
    const ip = parseIp(bare);
    const wantFmt = ip ? formatIp(ip) : bare;
    if (!a.ips.includes(wantFmt)) {
      throw new IpamCheckError(`network ${cfg.network}: prevResult address ${want} is not allocated to ${describe(key)} (it holds ${a.ips.join(', ')})`);
    }
  }
  return results;
}
