/**
 * Pure address arithmetic for carving a cluster CIDR into per-node pod
 * subnets. Works on bigints so IPv4 and IPv6 share one code path.
 */
import { formatIp, networkOf, parseCidr, parseIp, type Cidr } from '../cni/netlink/ip';
import { MeshworkError } from '../lib/errors';

export class SubnetConfigError extends MeshworkError {
  constructor(message: string) { super('ESUBNET_CONFIG', message); }
}

export interface Net { family: 4 | 6; base: bigint; prefix: number }

const bits = (f: 4 | 6) => (f === 4 ? 32 : 128);

function toBig(b: Buffer): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function fromBig(v: bigint, family: 4 | 6): Buffer {
  const out = Buffer.alloc(family === 4 ? 4 : 16);
  for (let i = out.length - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

/** Parses a CIDR that must be in network form ("10.244.0.0/16"). */
export function parseNet(text: string, what = 'CIDR'): Net {
  let c: Cidr;
  try { c = parseCidr(text); } catch { throw new SubnetConfigError(`${what} "${text}" is not a CIDR`); }
  const n = networkOf(c);
  if (!n.bytes.equals(c.bytes)) throw new SubnetConfigError(`${what} "${text}" has host bits set (the network is ${formatIp(n)}/${n.prefix})`);
  return { family: c.family, base: toBig(c.bytes), prefix: c.prefix };
}

export const formatNet = (n: Net): string => `${formatIp(fromBig(n.base, n.family))}/${n.prefix}`;

/** The address `offset` past the network address of `n` (0 = the network address itself). */
export function addrAt(n: Net, offset: number): string {
  return formatIp(fromBig(n.base + BigInt(offset), n.family));
}

export function netContains(outer: Net, inner: Net): boolean {
  if (outer.family !== inner.family || inner.prefix < outer.prefix) return false;
  const shift = BigInt(bits(outer.family) - outer.prefix);
  return (outer.base >> shift) === (inner.base >> shift);
}

export function ipIn(n: Net, ip: string): boolean {
  const p = parseIp(ip);
  return netContains(n, { family: p.family, base: toBig(p.bytes), prefix: bits(p.family) });
}

/** How many subnets of length `len` the cluster CIDR holds (capped: we never scan more). */
export function subnetCount(cluster: Net, len: number): number {
  const width = len - cluster.prefix;
  if (width < 0 || len > bits(cluster.family)) {
    throw new SubnetConfigError(`subnet length /${len} does not fit in cluster CIDR ${formatNet(cluster)}`);
  }
  return width >= 20 ? 1 << 20 : 1 << width;
}

/** The `i`-th subnet of length `len` inside `cluster`. */
export function subnetAt(cluster: Net, len: number, i: number): Net {
  const shift = BigInt(bits(cluster.family) - len);
  return { family: cluster.family, base: cluster.base + (BigInt(i) << shift), prefix: len };
}

/** A stable, well-spread starting index for a node, so concurrent joiners rarely race for one subnet. */
export function startIndex(node: string, count: number): number {
  let h = 2166136261;
  for (let i = 0; i < node.length; i++) { h ^= node.charCodeAt(i); h = Math.imul(h, 16777619) >>> 0; }
  return h % count;
}
