/**
 * Builders for the records we answer authoritatively. RDATA is produced with
 * dns2's record encoders (its bit writer is slow, but these answers are built
 * once per view change and then served from the packet cache). dns2 corrupts
 * TXT strings over 255 octets, so TXT data is split into legal
 * character-strings before it reaches dns2.
 */
import { isIPv4, isIPv6 } from 'node:net';
// dns2 ships no types for its Packet internals; we use a narrow surface.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const Packet: any = require('dns2').Packet;
import { CLASS_IN, TYPE, type Rr } from './wire';

function rdata(type: number, record: Record<string, unknown>): Buffer {
  const writer = new Packet.Writer();
  const key = Object.keys(Packet.TYPE).find((k) => Packet.TYPE[k] === type)!;
  Packet.Resource[key].encode(record, writer);
  return writer.toBuffer();
}

function nameRdata(target: string): Buffer {
  const writer = new Packet.Writer();
  Packet.Name.encode(target, writer);
  return writer.toBuffer();
}

export function a(name: string, ttl: number, address: string): Rr {
  return { name, type: TYPE.A, class: CLASS_IN, ttl, rdata: rdata(TYPE.A, { address }) };
}

export function aaaa(name: string, ttl: number, address: string): Rr {
  return { name, type: TYPE.AAAA, class: CLASS_IN, ttl, rdata: rdata(TYPE.AAAA, { address: expandIPv6(address) }) };
}

/** A or AAAA by the address family. */
export function address(name: string, ttl: number, ip: string): Rr {
  return isIPv6(ip) ? aaaa(name, ttl, ip) : a(name, ttl, ip);
}

/** TXT: each string is split into character-strings of at most 255 octets. */
export function txt(name: string, ttl: number, ...strings: string[]): Rr {
  const chunks: Buffer[] = [];
  for (const s of strings) {
    const b = Buffer.from(s, 'utf8');
    if (b.length === 0) chunks.push(b);
    for (let o = 0; o < b.length; o += 255) chunks.push(b.subarray(o, o + 255));
  }
  return { name, type: TYPE.TXT, class: CLASS_IN, ttl, rdata: rdata(TYPE.TXT, { data: chunks }) };
}

export function srv(name: string, ttl: number, priority: number, weight: number, port: number, target: string): Rr {
  return { name, type: TYPE.SRV, class: CLASS_IN, ttl, rdata: rdata(TYPE.SRV, { priority, weight, port, target }) };
}

export function ptr(name: string, ttl: number, target: string): Rr {
  return { name, type: TYPE.PTR, class: CLASS_IN, ttl, rdata: nameRdata(target) };
}

export function cname(name: string, ttl: number, target: string): Rr {
  return { name, type: TYPE.CNAME, class: CLASS_IN, ttl, rdata: nameRdata(target) };
}

export function ns(name: string, ttl: number, target: string): Rr {
  return { name, type: TYPE.NS, class: CLASS_IN, ttl, rdata: nameRdata(target) };
}

export interface SoaFields { primary: string; admin: string; serial: number; refresh: number; retry: number; expiration: number; minimum: number }

export function soa(name: string, ttl: number, f: SoaFields): Rr {
  return { name, type: TYPE.SOA, class: CLASS_IN, ttl, rdata: rdata(TYPE.SOA, { ...f }) };
}

/** The reverse-lookup name of an address: in-addr.arpa, or ip6.arpa nibbles. */
export function reverseName(ip: string): string | undefined {
  if (isIPv4(ip)) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  if (!isIPv6(ip)) return undefined;
  return `${expandIPv6(ip).replace(/:/g, '').split('').reverse().join('.')}.ip6.arpa`;
}

/** Full eight-group, zero-padded lower-case form of an IPv6 address. */
export function expandIPv6(ip: string): string {
  let head = ip.toLowerCase();
  // An embedded IPv4 tail becomes two hex groups.
  const v4 = head.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const o = v4[1].split('.').map(Number);
    head = head.slice(0, -v4[1].length) + `${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const [l, r] = head.split('::');
  const left = l ? l.split(':') : [];
  const right = r !== undefined && r !== '' ? r.split(':') : [];
  const fill = head.includes('::') ? new Array(8 - left.length - right.length).fill('0') : [];
  return [...left, ...fill, ...right].map((g) => g.padStart(4, '0')).join(':');
}

/** True when `s` is a valid DNS label for a hostname (RFC 1123). */
export function isLabel(s: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(s);
}
