/**
 * What the service VIP datapath should look like, as a pure function of the
 * store's Service documents and endpoint records. Records are validated here,
 * once, at the edge: every address that later reaches nft has been parsed to
 * bytes and printed back by us, every port is an integer in range, and user
 * names never leave this module except through `safeComment`.
 */
import { createHash } from 'node:crypto';
import { MeshworkError } from '../lib/errors';
import { formatIp, parseIp } from '../cni/netlink/ip';

export class VipRecordError extends MeshworkError {
  constructor(where: string, what: string) { super('EVIPRECORD', `${where}: ${what}`); }
}

export type L4 = 'tcp' | 'udp';

export interface VipServicePort { name?: string; protocol: L4; port: number; targetPort: number }

/** A Service that gets a VIP: ClusterIP type with at least one allocated address. */
export interface VipService {
  namespace: string;
  name: string;
  selector: Record<string, string>;
  /** Canonical addresses, at most one per family. */
  vips: Array<{ family: 4 | 6; ip: string }>;
  ports: VipServicePort[];
}

export interface VipEndpoint {
  namespace: string;
  labels: Record<string, string>;
  ready: boolean;
  /** Canonical addresses. */
  ips: Array<{ family: 4 | 6; ip: string }>;
}

export interface VipBackend { ip: string; port: number }

/** One VIP:port/protocol and the backends it spreads over (empty: reject). */
export interface VipEntry {
  /** `namespace/name:port/protocol`: stable identity, also sorted on. */
  id: string;
  /** `namespace/name` of the owning service. */
  service: string;
  family: 4 | 6;
  vip: string;
  protocol: L4;
  port: number;
  /** Sorted by address, deduplicated. */
  backends: VipBackend[];
}

export interface VipTable { entries: VipEntry[] }

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStrMap = (v: unknown): v is Record<string, string> => isObj(v) && Object.values(v).every((x) => typeof x === 'string');
const isPort = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;

function parseJson(where: string, text: string): Record<string, unknown> {
  let v: unknown;
  try { v = JSON.parse(text); } catch { throw new VipRecordError(where, 'not JSON'); }
  if (!isObj(v)) throw new VipRecordError(where, 'not a JSON object');
  return v;
}

function canonical(where: string, field: string, text: unknown): { family: 4 | 6; ip: string } {
  if (typeof text !== 'string') throw new VipRecordError(where, `${field} must be a string address`);
  try {
    const ip = parseIp(text.replace(/\/\d+$/, ''));
    return { family: ip.family, ip: formatIp(ip) };
  } catch {
    throw new VipRecordError(where, `${field} ${JSON.stringify(text)} is not an IP address`);
  }
}

/**
 * A stored Service document (policies/model.ts as JSON). Returns undefined for
 * services that get no VIP: ExternalName, headless (`None`), not yet allocated.
 */
export function parseVipService(where: string, text: string): VipService | undefined {
  const v = parseJson(where, text);
  const m = v.metadata, s = v.spec;
  if (v.kind !== 'Service') throw new VipRecordError(where, 'kind is not Service');
  if (!isObj(m) || typeof m.name !== 'string' || !m.name || typeof m.namespace !== 'string' || !m.namespace) {
    throw new VipRecordError(where, 'metadata.name and metadata.namespace must be non-empty strings');
  }
  if (!isObj(s)) throw new VipRecordError(where, 'spec missing');
  if (s.type === 'ExternalName') return undefined;
  if (s.type !== 'ClusterIP') throw new VipRecordError(where, `spec.type ${JSON.stringify(s.type)} is neither ClusterIP nor ExternalName`);
  if (s.selector !== undefined && !isStrMap(s.selector)) throw new VipRecordError(where, 'spec.selector must map strings to strings');
  const rawIps: unknown[] = Array.isArray(s.clusterIPs) && s.clusterIPs.length ? s.clusterIPs : s.clusterIP !== undefined ? [s.clusterIP] : [];
  if (rawIps.includes('None')) return undefined;
  const vips: VipService['vips'] = [];
  rawIps.forEach((ip, i) => {
    const c = canonical(where, Array.isArray(s.clusterIPs) ? `spec.clusterIPs[${i}]` : 'spec.clusterIP', ip);
    if (!vips.some((x) => x.family === c.family)) vips.push(c);
  });
  if (vips.length === 0) return undefined;
  if (!Array.isArray(s.ports)) throw new VipRecordError(where, 'spec.ports must be a list');
  const ports = s.ports.map((p, i): VipServicePort => {
    const at = `spec.ports[${i}]`;
    if (!isObj(p)) throw new VipRecordError(where, `${at} must be an object`);
    if (!isPort(p.port)) throw new VipRecordError(where, `${at}.port must be an integer 1-65535`);
    const target = p.targetPort ?? p.port;
    if (!isPort(target)) throw new VipRecordError(where, `${at}.targetPort must be an integer 1-65535`);
    const proto = p.protocol ?? 'TCP';
    if (proto !== 'TCP' && proto !== 'UDP') throw new VipRecordError(where, `${at}.protocol must be TCP or UDP`);
    if (p.name !== undefined && typeof p.name !== 'string') throw new VipRecordError(where, `${at}.name must be a string`);
    return { name: p.name as string | undefined, protocol: proto === 'TCP' ? 'tcp' : 'udp', port: p.port, targetPort: target };
  });
  return { namespace: m.namespace, name: m.name, selector: (s.selector as Record<string, string>) ?? {}, vips, ports };
}

/** An EndpointRecord (store/records.ts), reduced to what VIPs need. */
export function parseVipEndpoint(where: string, text: string): VipEndpoint {
  const v = parseJson(where, text);
  if (typeof v.namespace !== 'string') throw new VipRecordError(where, 'namespace must be a string');
  if (typeof v.ready !== 'boolean') throw new VipRecordError(where, 'ready must be a boolean');
  if (v.labels !== undefined && !isStrMap(v.labels)) throw new VipRecordError(where, 'labels must map strings to strings');
  if (!Array.isArray(v.ips)) throw new VipRecordError(where, 'ips must be a list of addresses');
  const ips = v.ips.map((ip, i) => canonical(where, `ips[${i}]`, ip));
  return { namespace: v.namespace, labels: (v.labels as Record<string, string>) ?? {}, ready: v.ready, ips };
}

/** An empty selector selects nothing: a VIP must never spread over every pod of a namespace. */
export function selects(svc: VipService, ep: VipEndpoint): boolean {
  const sel = Object.entries(svc.selector);
  return sel.length > 0 && ep.namespace === svc.namespace && sel.every(([k, v]) => ep.labels[k] === v);
}

export interface Conflict { id: string; owner: string; loser: string }

/**
 * The desired table. Deterministic (sorted), so rendering it twice gives the
 * same text and an unchanged cluster costs no nft run. Two services claiming
 * the same VIP:port/protocol (the store should never hold that) are reported;
 * the one first by namespace/name keeps it, so one bad record cannot make nft
 * refuse the whole table.
 */
export function buildVipTable(services: Iterable<VipService>, endpoints: Iterable<VipEndpoint>): { table: VipTable; conflicts: Conflict[] } {
  const index = indexEndpoints(endpoints);
  const svcs = [...services].sort((a, b) => cmp(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  const byKey = new Map<string, VipEntry>();
  const owners = new Map<string, string>();
  const conflicts: Conflict[] = [];
  for (const svc of svcs) {
    const owner = `${svc.namespace}/${svc.name}`;
    const selected = candidates(index, svc).filter((e) => selects(svc, e));
    for (const vip of svc.vips) {
      for (const p of svc.ports) {
        const key = `${vip.ip}|${p.protocol}|${p.port}`;
        const id = `${owner}:${p.port}/${p.protocol}${vip.family === 6 ? '/v6' : ''}`;
        const prev = owners.get(key);
        if (prev !== undefined) {
          if (prev !== owner) conflicts.push({ id: `${vip.ip}:${p.port}/${p.protocol}`, owner: prev, loser: owner });
          continue; // the same port listed twice in one service: first wins
        }
        owners.set(key, owner);
        const seen = new Set<string>();
        const backends: VipBackend[] = [];
        for (const e of selected) {
          for (const ip of e.ips) {
            if (ip.family !== vip.family || seen.has(ip.ip)) continue;
            seen.add(ip.ip);
            backends.push({ ip: ip.ip, port: p.targetPort });
          }
        }
        backends.sort((a, b) => cmp(a.ip, b.ip));
        byKey.set(key, { id, service: owner, family: vip.family, vip: vip.ip, protocol: p.protocol, port: p.port, backends });
      }
    }
  }
  const entries = [...byKey.values()].sort((a, b) => cmp(a.id, b.id));
  return { table: { entries }, conflicts };
}

/**
 * Ready endpoints by namespace and by each label pair, so a pass costs about
 * endpoints x labels + services x matches instead of services x endpoints.
 */
type EndpointIndex = Map<string, VipEndpoint[]>;
const pairKey = (ns: string, k: string, v: string) => `${ns}\u0000${k}\u0000${v}`;

function indexEndpoints(endpoints: Iterable<VipEndpoint>): EndpointIndex {
  const index: EndpointIndex = new Map();
  for (const e of endpoints) {
    if (!e.ready) continue;
    for (const [k, v] of Object.entries(e.labels)) {
      const key = pairKey(e.namespace, k, v);
      const list = index.get(key);
      if (list) list.push(e); else index.set(key, [e]);
    }
  }
  return index;
}

/** Endpoints carrying the selector's rarest pair: every match is among them. */
function candidates(index: EndpointIndex, svc: VipService): VipEndpoint[] {
  let best: VipEndpoint[] | undefined;
  for (const [k, v] of Object.entries(svc.selector)) {
    const list = index.get(pairKey(svc.namespace, k, v)) ?? [];
    if (!best || list.length < best.length) best = list;
  }
  return best ?? [];
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A short stable hash for chain names: identity in, 12 hex digits out. */
export function shortHash(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 12);
}
