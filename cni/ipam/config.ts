/**
 * The `ipam` section of a network config (`type: "meshwork"`), validated once
 * into typed ranges. Field names follow host-local: `ranges` (a list of range
 * sets), each range `subnet`, `rangeStart`, `rangeEnd`, `gateway`; `routes`;
 * `dataDir`. Every error names the field and the bad value.
 */
import * as path from 'node:path';
import {
  type Cidr, type Ip, type Range, type RangeSet,
  contains, formatCidr, formatIp, parseCidr, parseIp, rangesOverlap, usableSpan,
} from './allocator';
import { IpamConfigError } from './errors';

export const DEFAULT_DATA_DIR = '/var/lib/meshwork/ipam';

export interface IpamRoute { dst: string; gw?: string }
export interface IpamDns { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] }

/** A static address the runtime asked for, with the field it came from. */
export interface RequestedIp { ip: Ip; field: string; text: string }

export interface IpamConfig {
  network: string;
  rangeSets: RangeSet[];
  routes: IpamRoute[];
  dns?: IpamDns;
  dataDir: string;
  requested: RequestedIp[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

/** Network names become directory names: keep them to what the spec allows. */
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function networkName(netconf: Json): string {
  const name = netconf.name;
  if (typeof name !== 'string' || !NETWORK_NAME.test(name) || name === '..' || name.length > 200) {
    throw new IpamConfigError('name', `${show(name)} is not a valid network name (letters, digits, "_", "." and "-")`);
  }
  return name;
}

function optString(obj: Json, key: string, field: string): string | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new IpamConfigError(field, `expected a string, got ${show(v)}`);
  return v;
}

function optStringArray(obj: Json, key: string, field: string): string[] | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) {
    throw new IpamConfigError(field, `expected a list of strings, got ${show(v)}`);
  }
  return v as string[];
}

function parseRange(raw: unknown, field: string): Range {
  if (!isObject(raw)) throw new IpamConfigError(field, `expected an object with "subnet", got ${show(raw)}`);
  const subnetText = raw.subnet;
  if (subnetText === undefined) throw new IpamConfigError(`${field}.subnet`, 'is required');
  const parsed = typeof subnetText === 'string' ? parseCidr(subnetText) : undefined;
  if (!parsed) throw new IpamConfigError(`${field}.subnet`, `${show(subnetText)} is not a CIDR`);
  const subnet: Cidr = parsed.cidr;
  if (parsed.address.value !== subnet.network) {
    throw new IpamConfigError(`${field}.subnet`, `${show(subnetText)} has host bits set (the network is ${formatCidr(subnet)})`);
  }
  const span = usableSpan(subnet);
  if (span.start > span.end) {
    throw new IpamConfigError(`${field}.subnet`, `${show(subnetText)} is too small to hold any container address`);
  }

  const addr = (key: string): Ip | undefined => {
    const text = optString(raw, key, `${field}.${key}`);
    if (text === undefined) return undefined;
    const ip = parseIp(text);
    if (!ip) throw new IpamConfigError(`${field}.${key}`, `${show(text)} is not an IP address`);
    if (!contains(subnet, ip)) throw new IpamConfigError(`${field}.${key}`, `${text} is outside subnet ${formatCidr(subnet)}`);
    return ip;
  };
  const start = addr('rangeStart');
  const end = addr('rangeEnd');
  const gateway = addr('gateway');
  const range: Range = {
    subnet,
    start: start?.value ?? span.start,
    end: end?.value ?? span.end,
    gateway: gateway?.value ?? span.start,
  };
  if (range.start < span.start || range.start > span.end) {
    throw new IpamConfigError(`${field}.rangeStart`, `${formatIp({ family: subnet.family, value: range.start })} is the network or broadcast address of ${formatCidr(subnet)}`);
  }
  if (range.end < span.start || range.end > span.end) {
    throw new IpamConfigError(`${field}.rangeEnd`, `${formatIp({ family: subnet.family, value: range.end })} is the network or broadcast address of ${formatCidr(subnet)}`);
  }
  if (range.start > range.end) {
    throw new IpamConfigError(`${field}`, `rangeStart ${formatIp({ family: subnet.family, value: range.start })} is after rangeEnd ${formatIp({ family: subnet.family, value: range.end })}`);
  }
  return range;
}

function parseRangeSets(ipam: Json): RangeSet[] {
  let raw = ipam.ranges;
  let base = 'ipam.ranges';
  if (raw === undefined && ipam.subnet !== undefined) {
    // host-local's older flat form: one range described at the top of `ipam`.
    raw = [[{ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }]];
    base = 'ipam';
  }
  if (raw === undefined) throw new IpamConfigError('ipam.ranges', 'is required (a list of range sets)');
  if (!Array.isArray(raw) || raw.length === 0) throw new IpamConfigError('ipam.ranges', `expected a non-empty list of range sets, got ${show(raw)}`);
  const sets: RangeSet[] = raw.map((set, i) => {
    const setField = base === 'ipam' ? 'ipam' : `ipam.ranges[${i}]`;
    if (!Array.isArray(set) || set.length === 0) throw new IpamConfigError(setField, `expected a non-empty list of ranges, got ${show(set)}`);
    const ranges = set.map((r, j) => parseRange(r, base === 'ipam' ? 'ipam' : `ipam.ranges[${i}][${j}]`));
    for (let j = 1; j < ranges.length; j++) {
      if (ranges[j].subnet.family !== ranges[0].subnet.family) {
        throw new IpamConfigError(`${setField}[${j}].subnet`, 'mixes IPv4 and IPv6 in one range set (use one range set per family)');
      }
    }
    return ranges;
  });
  // No address may belong to two ranges, within or across sets.
  const all = sets.flatMap((s, i) => s.map((r, j) => ({ r, field: `ipam.ranges[${i}][${j}]` })));
  for (let a = 0; a < all.length; a++) {
    for (let b = a + 1; b < all.length; b++) {
      if (rangesOverlap(all[a].r, all[b].r)) throw new IpamConfigError(all[b].field, `overlaps ${all[a].field}`);
    }
  }
  return sets;
}

function parseRoutes(ipam: Json): IpamRoute[] {
  const raw = ipam.routes;
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new IpamConfigError('ipam.routes', `expected a list, got ${show(raw)}`);
  return raw.map((r, i) => {
    const field = `ipam.routes[${i}]`;
    if (!isObject(r)) throw new IpamConfigError(field, `expected an object with "dst", got ${show(r)}`);
    const dst = optString(r, 'dst', `${field}.dst`);
    if (dst === undefined) throw new IpamConfigError(`${field}.dst`, 'is required');
    const d = parseCidr(dst);
    if (!d) throw new IpamConfigError(`${field}.dst`, `${show(dst)} is not a CIDR`);
    const gw = optString(r, 'gw', `${field}.gw`);
    if (gw !== undefined) {
      const g = parseIp(gw);
      if (!g) throw new IpamConfigError(`${field}.gw`, `${show(gw)} is not an IP address`);
      if (g.family !== d.cidr.family) throw new IpamConfigError(`${field}.gw`, `${gw} is not the same IP family as dst ${dst}`);
      return { dst: formatCidr(d.cidr), gw: formatIp(g) };
    }
    return { dst: formatCidr(d.cidr) };
  });
}

function parseDns(ipam: Json): IpamDns | undefined {
  const raw = ipam.dns;
  if (raw === undefined) return undefined;
  if (!isObject(raw)) throw new IpamConfigError('ipam.dns', `expected an object, got ${show(raw)}`);
  const dns: IpamDns = {};
  const ns = optStringArray(raw, 'nameservers', 'ipam.dns.nameservers');
  ns?.forEach((s, i) => { if (!parseIp(s)) throw new IpamConfigError(`ipam.dns.nameservers[${i}]`, `${show(s)} is not an IP address`); });
  if (ns) dns.nameservers = ns;
  const domain = optString(raw, 'domain', 'ipam.dns.domain');
  if (domain !== undefined) dns.domain = domain;
  const search = optStringArray(raw, 'search', 'ipam.dns.search');
  if (search) dns.search = search;
  const options = optStringArray(raw, 'options', 'ipam.dns.options');
  if (options) dns.options = options;
  return dns;
}

function parseDataDir(ipam: Json): string {
  const dir = optString(ipam, 'dataDir', 'ipam.dataDir') ?? DEFAULT_DATA_DIR;
  if (!path.isAbsolute(dir)) throw new IpamConfigError('ipam.dataDir', `${show(dir)} is not an absolute path`);
  return dir;
}

/** Accepts "10.1.0.7", "10.1.0.7/24" or "fd00::7/64": the prefix, if any, is the range's. */
function parseRequested(text: unknown, field: string): RequestedIp {
  if (typeof text !== 'string') throw new IpamConfigError(field, `expected an IP address string, got ${show(text)}`);
  const ip = parseIp(text) ?? parseCidr(text)?.address;
  if (!ip) throw new IpamConfigError(field, `${show(text)} is not an IP address`);
  return { ip, field, text };
}

/**
 * Static addresses requested through the `ips` capability
 * (`runtimeConfig.ips`), the `args.cni.ips` convention, or CNI_ARGS `IP=`.
 */
export function requestedIps(netconf: Json, env: Record<string, string | undefined>): RequestedIp[] {
  const out: RequestedIp[] = [];
  const rc = netconf.runtimeConfig;
  if (rc !== undefined && isObject(rc) && rc.ips !== undefined) {
    if (!Array.isArray(rc.ips)) throw new IpamConfigError('runtimeConfig.ips', `expected a list of IP addresses, got ${show(rc.ips)}`);
    rc.ips.forEach((t, i) => out.push(parseRequested(t, `runtimeConfig.ips[${i}]`)));
  }
  const args = netconf.args;
  if (isObject(args) && isObject(args.cni) && args.cni.ips !== undefined) {
    const ips = args.cni.ips;
    if (!Array.isArray(ips)) throw new IpamConfigError('args.cni.ips', `expected a list of IP addresses, got ${show(ips)}`);
    ips.forEach((t, i) => out.push(parseRequested(t, `args.cni.ips[${i}]`)));
  }
  for (const pair of (env.CNI_ARGS ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq) === 'IP') {
      pair.slice(eq + 1).split(',').filter(Boolean).forEach((t, i) => out.push(parseRequested(t, `CNI_ARGS IP[${i}]`)));
    }
  }
  // The same address from two sources is one request.
  const seen = new Set<string>();
  return out.filter((r) => {
    const k = `${r.ip.family}/${r.ip.value}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export function parseIpamConfig(netconf: Json, env: Record<string, string | undefined>): IpamConfig {
  const network = networkName(netconf);
  const ipam = netconf.ipam;
  if (!isObject(ipam)) throw new IpamConfigError('ipam', `expected an object, got ${show(ipam)}`);
  return {
    network,
    rangeSets: parseRangeSets(ipam),
    routes: parseRoutes(ipam),
    dns: parseDns(ipam),
    dataDir: parseDataDir(ipam),
    requested: requestedIps(netconf, env),
  };
}
