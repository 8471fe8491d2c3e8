/**
 * Cluster IP arithmetic, pure: parse a service CIDR, test membership, pick a
 * free address. A service's first choice is a hash of its namespace/name, so
 * re-creating a service tends to give back the address clients cached; on a
 * collision the search moves on to the next address.
 */
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { PolicyInputError } from './errors';

export const DEFAULT_SERVICE_CIDR = '10.96.0.0/16';

export interface Cidr { family: 4 | 6; base: bigint; bits: number; text: string }

function toBig(ip: string): bigint {
  if (net.isIPv4(ip)) return ip.split('.').reduce((a, o) => (a << 8n) | BigInt(Number(o)), 0n);
  // Expand "::" and an embedded IPv4 tail, then read eight hextets.
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) { const n = toBig(v4[1]); text = text.slice(0, -v4[1].length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`; }
  const [head, tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const parts = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t];
  return parts.reduce((a, p) => (a << 16n) | BigInt(parseInt(p, 16)), 0n);
}

function fromBig(n: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.');
  const parts = [];
  for (let s = 112n; s >= 0n; s -= 16n) parts.push(((n >> s) & 0xffffn).toString(16));
  // Canonical form (RFC 5952): the longest run of zero hextets becomes "::".
  let best = -1; let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (parts[i] !== '0') { i++; continue; }
    let j = i; while (j < 8 && parts[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return parts.join(':');
  return `${parts.slice(0, best).join(':')}::${parts.slice(best + bestLen).join(':')}`;
}

/** Canonical text of an address (so "10.096.0.1"-style duplicates cannot sneak past key checks). */
export function canonicalIp(ip: string): string {
  const fam = net.isIP(ip);
  return fam === 0 ? ip : fromBig(toBig(ip), fam as 4 | 6);
}

export function parseCidr(text: string): Cidr {
  const m = /^([^/]+)\/(\d+)$/.exec(text.trim());
  const fam = m ? net.isIP(m[1]) : 0;
  if (!m || fam === 0) throw new PolicyInputError(`service CIDR "${text}" is not a CIDR such as 10.96.0.0/16`);
  const bits = Number(m[2]);
  const width = fam === 4 ? 32 : 128;
  if (bits > width - 2) throw new PolicyInputError(`service CIDR "${text}" is too small: it needs room for at least two addresses`);
  const hostBits = BigInt(width - bits);
  const base = (toBig(m[1]) >> hostBits) << hostBits;
  return { family: fam as 4 | 6, base, bits, text: `${fromBig(base, fam as 4 | 6)}/${bits}` };
}

export function cidrContains(c: Cidr, ip: string): boolean {
  if (net.isIP(ip) !== c.family) return false;
  const hostBits = BigInt((c.family === 4 ? 32 : 128) - c.bits);
  return (toBig(ip) >> hostBits) === (c.base >> hostBits);
}

/**
 * A free address for `owner` ("namespace/name"), never the network address
 * (nor, in IPv4, the broadcast address), or undefined when the range is full.
 */
export function pickClusterIp(c: Cidr, owner: string, taken: (ip: string) => boolean): string | undefined {
  const size = 1n << BigInt((c.family === 4 ? 32 : 128) - c.bits);
  const usable = c.family === 4 ? size - 2n : size - 1n; // offsets 1..usable
  const seed = BigInt(`0x${crypto.createHash('sha256').update(owner).digest('hex').slice(0, 30)}`) % usable;
  // Bounded search: a full /16 has 65534 addresses; past 1<<20 probes we call it full.
  const limit = usable < 1n << 20n ? usable : 1n << 20n;
  for (let i = 0n; i < limit; i++) {
    const ip = fromBig(c.base + 1n + ((seed + i) % usable), c.family);
    if (!taken(ip)) return ip;
  }
  return undefined;
}
