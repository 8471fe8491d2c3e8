/**
 * Address conversions between the text forms in CNI configs/results and the
 * byte forms netlink speaks. Pure; throws InvalidAddressError on bad text.
 */
import { isIP } from 'node:net';
import { MeshworkError } from '../../lib/errors';

export const AF_INET = 2;
export const AF_INET6 = 10;

export class InvalidAddressError extends MeshworkError {
  constructor(text: string, what = 'IP address') {
    super('EINVALID_ADDRESS', `invalid ${what} "${text}"`);
  }
}

export interface Ip { family: 4 | 6; bytes: Buffer }
export interface Cidr extends Ip { prefix: number }

export function parseIp(text: string): Ip {
  const fam = isIP(text);
  if (fam === 4) return { family: 4, bytes: Buffer.from(text.split('.').map(Number)) };
  if (fam === 6) return { family: 6, bytes: parseV6(text) };
  throw new InvalidAddressError(text);
}

function parseV6(text: string): Buffer {
  let s = text.split('%')[0];
  const out = Buffer.alloc(16);
  // An embedded dotted quad becomes the last two groups.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (tail) {
    const q = tail[1].split('.').map(Number);
    s = s.slice(0, -tail[1].length) + `${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const [head, rest] = s.split('::');
  const h = head ? head.split(':') : [];
  const r = rest !== undefined && rest !== '' ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array(8 - h.length - r.length).fill('0'), ...r];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Parses "10.1.0.5/24" or "fd00::5/64"; the address part is kept as written (not masked). */
export function parseCidr(text: string): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text ?? '');
  if (!m) throw new InvalidAddressError(String(text), 'CIDR');
  let ip: Ip;
  try { ip = parseIp(m[1]); } catch { throw new InvalidAddressError(text, 'CIDR'); }
  const prefix = Number(m[2]);
  if (prefix > (ip.family === 4 ? 32 : 128)) throw new InvalidAddressError(text, 'CIDR');
  return { ...ip, prefix };
}

export function formatIp(ip: Ip | Buffer): string {
  const b = Buffer.isBuffer(ip) ? ip : ip.bytes;
  if (b.length === 4) return [...b].join('.');
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  // RFC 5952: compress the longest run (>1) of zero groups, the first on ties.
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export const formatCidr = (c: Cidr): string => `${formatIp(c)}/${c.prefix}`;

/** The network address of a CIDR (host bits cleared). */
export function networkOf(c: Cidr): Cidr {
  const bytes = Buffer.from(c.bytes);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, c.prefix - i * 8));
    bytes[i] &= (0xff << (8 - bits)) & 0xff;
  }
  return { family: c.family, bytes, prefix: c.prefix };
}

export function contains(net: Cidr, ip: Ip): boolean {
  if (net.family !== ip.family) return false;
  return networkOf({ ...ip, prefix: net.prefix }).bytes.equals(networkOf(net).bytes);
}

export const afOf = (family: 4 | 6): number => (family === 4 ? AF_INET : AF_INET6);
export const familyOfAf = (af: number): 4 | 6 => (af === AF_INET6 ? 6 : 4);
