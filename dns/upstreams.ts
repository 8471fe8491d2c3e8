/**
 * Upstream resolver addresses: parsed from flags ("ip", "ip:port", "[v6]:port")
 * or, by default, from the host's resolv.conf without loopback entries (a
 * loopback resolver on the host is unreachable from, or is, ourselves).
 */
import * as fs from 'node:fs';
import { isIP, isIPv4 } from 'node:net';
import { MeshworkError } from '../lib/errors';

export interface Upstream { address: string; port: number }

export function parseUpstream(spec: string): Upstream {
  const s = spec.trim();
  let address = s;
  let port = 53;
  const v6 = s.match(/^\[([^\]]+)\](?::(\d+))?$/);
  if (v6) { address = v6[1]; if (v6[2]) port = Number(v6[2]); }
  else if (s.split(':').length === 2) { const [a, p] = s.split(':'); address = a; port = Number(p); }
  if (!isIP(address)) throw new MeshworkError('EDNSCONFIG', `upstream "${spec}": not an IP address (expected ip, ip:port or [ipv6]:port)`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new MeshworkError('EDNSCONFIG', `upstream "${spec}": bad port`);
  return { address, port };
}

export function isLoopback(ip: string): boolean {
  return isIPv4(ip) ? ip.startsWith('127.') : ip === '::1' || ip.toLowerCase() === '0:0:0:0:0:0:0:1';
}

/** Nameservers of a resolv.conf text, loopback ones left out. */
export function upstreamsFromResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = line.match(/^\s*nameserver\s+(\S+)/);
    if (!m) continue;
    const ip = m[1].replace(/%.*$/, '');
    if (isIP(ip) && !isLoopback(ip)) out.push({ address: ip, port: 53 });
  }
  return out;
}

export function defaultUpstreams(path = '/etc/resolv.conf'): Upstream[] {
  try { return upstreamsFromResolvConf(fs.readFileSync(path, 'utf8')); } catch { return []; }
}

export const upstreamLabel = (u: Upstream): string => (u.address.includes(':') ? `[${u.address}]:${u.port}` : `${u.address}:${u.port}`);
