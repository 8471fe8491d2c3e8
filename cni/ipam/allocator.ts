/**
 * Pure address arithmetic for IPAM: parsing, ranges, and picking the next free
 * address. No I/O and no clock, so every rule here is covered by table tests.
 * Addresses are bigints so IPv4 and IPv6 share one code path; `ip-address`
 * does the parsing and formatting.
 */
import { Address4, Address6 } from 'ip-address';

export type Family = 4 | 6;

export interface Ip { family: Family; value: bigint }
export interface Cidr { family: Family; network: bigint; prefix: number }

/** One allocatable range inside a subnet; `start..end` inclusive. */
export interface Range {
  subnet: Cidr;
  start: bigint;
  end: bigint;
  gateway?: bigint;
}

/** Ranges that together give a container one address (one family per set). */
export type RangeSet = readonly Range[];

export const familyBits = (f: Family): number => (f === 4 ? 32 : 128);

/** Parses a bare address (no suffix); undefined when not an address. */
export function parseIp(text: string): Ip | undefined {
  if (typeof text !== 'string' || text.includes('/')) return undefined;
  if (Address4.isValid(text)) return { family: 4, value: new Address4(text).bigInt() };
  // Zone ids ("fe80::1%eth0") have no meaning in IPAM config.
  if (!text.includes('%') && Address6.isValid(text)) return { family: 6, value: new Address6(text).bigInt() };
  return undefined;
}

/** Parses "addr/prefix"; `address` keeps the host bits, `network` clears them. */
export function parseCidr(text: string): { address: Ip; cidr: Cidr } | undefined {
  if (typeof text !== 'string') return undefined;
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const address = parseIp(m[1]);
  if (!address) return undefined;
  const prefix = Number(m[2]);
  if (prefix > familyBits(address.family)) return undefined;
  return { address, cidr: { family: address.family, network: networkOf(address, prefix), prefix } };
}

export function formatIp(ip: Ip): string {
  return ip.family === 4 ? Address4.fromBigInt(ip.value).correctForm() : Address6.fromBigInt(ip.value).correctForm();
}

export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.network })}/${c.prefix}`;
}

function hostMask(family: Family, prefix: number): bigint {
  return (1n << BigInt(familyBits(family) - prefix)) - 1n;
}

export function networkOf(ip: Ip, prefix: number): bigint {
  return ip.value & ~hostMask(ip.family, prefix);
}

/** The last address of the subnet (the IPv4 broadcast). */
export function lastOf(c: Cidr): bigint {
  return c.network | hostMask(c.family, c.prefix);
}

export function contains(c: Cidr, ip: Ip): boolean {
  return c.family === ip.family && ip.value >= c.network && ip.value <= lastOf(c);
}

/**
 * The default allocatable span of a subnet: never the network address (IPv4
 * network, IPv6 subnet-router anycast) and never the IPv4 broadcast. Empty
 * (start > end) for IPv4 /31 and /32 and IPv6 /128.
 */
export function usableSpan(c: Cidr): { start: bigint; end: bigint } {
  return { start: c.network + 1n, end: c.family === 4 ? lastOf(c) - 1n : lastOf(c) };
}

export function rangesOverlap(a: Range, b: Range): boolean {
  return a.subnet.family === b.subnet.family && a.start <= b.end && b.start <= a.end;
}

/** The range of `set` holding `ip`, if any. */
export function rangeFor(set: RangeSet, ip: Ip): Range | undefined {
  return set.find((r) => r.subnet.family === ip.family && ip.value >= r.start && ip.value <= r.end);
}

/** True when `ip` may be handed out from `set`: inside a range and not a gateway. */
export function isAllocatable(set: RangeSet, ip: Ip): boolean {
  return rangeFor(set, ip) !== undefined && !set.some((r) => r.gateway === ip.value);
}

/** Number of addresses `set` can hand out (gateways inside ranges excluded). */
export function capacity(set: RangeSet): bigint {
  let n = 0n;
  for (const r of set) n += r.end - r.start + 1n;
  const gateways = new Set(set.map((r) => r.gateway).filter((g): g is bigint => g !== undefined));
  for (const g of gateways) if (rangeFor(set, { family: set[0].subnet.family, value: g })) n -= 1n;
  return n;
}

/**
 * The next free address of `set`, searching after `after` (the last address
 * handed out, so freed addresses are not reused at once, as host-local does)
 * and wrapping around once. `taken` holds values of this family. Undefined
 * when the set is exhausted; that is decided by counting, so an exhausted
 * /8 answers as fast as an empty one.
 */
export function nextFree(set: RangeSet, taken: ReadonlySet<bigint>, after?: bigint): bigint | undefined {
  if (set.length === 0) return undefined;
  const family = set[0].subnet.family;
  const gateways = new Set(set.map((r) => r.gateway).filter((g): g is bigint => g !== undefined));
  let used = 0n;
  for (const v of taken) if (isAllocatable(set, { family, value: v })) used += 1n;
  if (used >= capacity(set)) return undefined;

  const ordered = [...set].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  let startIdx = 0;
  let cursor = ordered[0].start;
  if (after !== undefined) {
    const i = ordered.findIndex((r) => after >= r.start && after <= r.end);
    if (i >= 0) {
      startIdx = after < ordered[i].end ? i : (i + 1) % ordered.length;
      cursor = after < ordered[i].end ? after + 1n : ordered[startIdx].start;
    }
  }
  // Visit every range once from the cursor, then the head of the first range.
  for (let step = 0; step <= ordered.length; step++) {
    const r = ordered[(startIdx + step) % ordered.length];
    const from = step === 0 ? cursor : r.start;
    const to = step === ordered.length ? cursor - 1n : r.end;
    for (let v = from; v <= to; v++) {
      if (!taken.has(v) && !gateways.has(v)) return v;
    }
  }
  return undefined; // unreachable when the count above is right; kept as a guard
}
