/**
 * What a call tells the cluster layers (endpoint record, sidecar injection,
 * cluster DNS), validated once at the edge. Three sources, most specific
 * last: the network config, `runtimeConfig` (capabilities the runtime fills
 * in: `labels`, `mesh`, `hostname`, `aliases`, `dns`) and `args.cni` (the CNI
 * conventions' per-container args), plus `CNI_ARGS` for the Kubernetes pod
 * identity (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`).
 */
import * as os from 'node:os';
import { isIP } from 'node:net';
import { isObject, show } from './config';
import { ConfigError, type Dns, type NetConf } from './types';

export const DEFAULT_STORE = 'file:/var/lib/meshwork';
export const DEFAULT_POD_NAMESPACE = 'default';
/** The sidecar's defaults (cli/sidecar.ts): outbound 15001, inbound 15006, admin 15090. */
export const MESH_DEFAULTS = { outboundPort: 15001, inboundPort: 15006, adminPort: 15090 } as const;

export interface MeshOptions {
  outboundPort: number;
  inboundPort: number;
  sidecarGid?: number;
  excludeInboundPorts: number[];
  excludeOutboundPorts: number[];
  excludeOutboundCidrs: string[];
  includeInboundPorts?: number[];
}

export interface ClusterDns { server: string; zone: string }

export interface ClusterConf {
  /** Store spec (store/spec.ts); parsed when the store is opened. */
  store: string;
  node: string;
  podNamespace: string;
  pod: string;
  labels: Record<string, string>;
  hostname?: string;
  aliases: string[];
  /** Set when this pod gets the sidecar's interception rules. */
  mesh?: MeshOptions;
  clusterDNS?: ClusterDns;
  /** The pod's DNS as the runtime decided it (capability `dns`); replaces the result's `dns`. */
  runtimeDNS?: Dns;
}

type Json = Record<string, unknown>;

const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;

function ports(v: unknown, field: string): number[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every(isPort)) throw new ConfigError(field, `expected a list of ports 1-65535, got ${show(v)}`);
  return v as number[];
}

function isCidr(s: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const fam = isIP(m[1]);
  const p = Number(m[2]);
  return fam !== 0 && p <= (fam === 4 ? 32 : 128);
}

/** `true`, `false` or an options object; undefined when this source says nothing. */
function parseMesh(v: unknown, field: string): MeshOptions | false | undefined {
  if (v === undefined || v === null) return undefined;
  if (v === false) return false;
  if (v === true) return { ...MESH_DEFAULTS_OPTS() };
  if (!isObject(v)) throw new ConfigError(field, `expected true, false or an object of sidecar options, got ${show(v)}`);
  const known = ['enabled', 'outboundPort', 'inboundPort', 'sidecarGid', 'excludeInboundPorts', 'excludeOutboundPorts', 'excludeOutboundCidrs', 'includeInboundPorts'];
  for (const k of Object.keys(v)) if (!known.includes(k)) throw new ConfigError(`${field}.${k}`, `unknown sidecar option (known: ${known.join(', ')})`);
  if (v.enabled !== undefined && typeof v.enabled !== 'boolean') throw new ConfigError(`${field}.enabled`, `expected true or false, got ${show(v.enabled)}`);
  if (v.enabled === false) return false;
  const o = MESH_DEFAULTS_OPTS();
  for (const k of ['outboundPort', 'inboundPort'] as const) {
    if (v[k] === undefined) continue;
    if (!isPort(v[k])) throw new ConfigError(`${field}.${k}`, `expected a port 1-65535, got ${show(v[k])}`);
    o[k] = v[k] as number;
  }
  if (o.outboundPort === o.inboundPort) throw new ConfigError(`${field}.inboundPort`, `must differ from outboundPort ${o.outboundPort}`);
  if (v.sidecarGid !== undefined) {
    if (!Number.isInteger(v.sidecarGid) || (v.sidecarGid as number) < 0 || (v.sidecarGid as number) > 0xfffffffe) throw new ConfigError(`${field}.sidecarGid`, `expected a group id, got ${show(v.sidecarGid)}`);
    o.sidecarGid = v.sidecarGid as number;
  }
  o.excludeInboundPorts = ports(v.excludeInboundPorts, `${field}.excludeInboundPorts`) ?? o.excludeInboundPorts;
  o.excludeOutboundPorts = ports(v.excludeOutboundPorts, `${field}.excludeOutboundPorts`) ?? o.excludeOutboundPorts;
  o.includeInboundPorts = ports(v.includeInboundPorts, `${field}.includeInboundPorts`);
  if (v.excludeOutboundCidrs !== undefined && v.excludeOutboundCidrs !== null) {
    const c = v.excludeOutboundCidrs;
    if (!Array.isArray(c)) throw new ConfigError(`${field}.excludeOutboundCidrs`, `expected a list of CIDRs, got ${show(c)}`);
    c.forEach((x, i) => { if (typeof x !== 'string' || !isCidr(x)) throw new ConfigError(`${field}.excludeOutboundCidrs[${i}]`, `${show(x)} is not a CIDR`); });
    o.excludeOutboundCidrs = c as string[];
  }
  return o;
}

// The admin port stays reachable for scraping unless the caller lists its own exclusions.
const MESH_DEFAULTS_OPTS = (): MeshOptions => ({
  outboundPort: MESH_DEFAULTS.outboundPort,
  inboundPort: MESH_DEFAULTS.inboundPort,
  excludeInboundPorts: [MESH_DEFAULTS.adminPort],
  excludeOutboundPorts: [],
  excludeOutboundCidrs: [],
});

/** Labels as a map, or as the CNI conventions' list of `{key, value}`. */
function parseLabels(v: unknown, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  const out: Record<string, string> = {};
  if (Array.isArray(v)) {
    v.forEach((l, i) => {
      if (!isObject(l) || typeof l.key !== 'string' || l.key === '' || typeof l.value !== 'string') throw new ConfigError(`${field}[${i}]`, `expected {"key": string, "value": string}, got ${show(l)}`);
      out[l.key] = l.value;
    });
    return out;
  }
  if (!isObject(v)) throw new ConfigError(field, `expected an object of string labels or a list of {"key", "value"}, got ${show(v)}`);
  for (const [k, val] of Object.entries(v)) {
    if (k === '' || typeof val !== 'string') throw new ConfigError(`${field}.${k}`, `expected a string label value, got ${show(val)}`);
    out[k] = val;
  }
  return out;
}

const DNS_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function parseName(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' || !DNS_NAME.test(v) || v.length > 253) throw new ConfigError(field, `expected a DNS name (letters, digits, "-", dot-separated), got ${show(v)}`);
  return v;
}

function parseAliases(v: unknown, field: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new ConfigError(field, `expected a list of names, got ${show(v)}`);
  return v.map((a, i) => parseName(a, `${field}[${i}]`) ?? (() => { throw new ConfigError(`${field}[${i}]`, 'empty alias'); })());
}

function parseClusterDns(v: unknown): ClusterDns | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw new ConfigError('clusterDNS', `expected {"server": IP, "zone": name}, got ${show(v)}`);
  if (typeof v.server !== 'string' || !isIP(v.server)) throw new ConfigError('clusterDNS.server', `expected an IP address, got ${show(v.server)}`);
  const zone = v.zone === undefined ? 'cluster.local' : v.zone;
  if (typeof zone !== 'string' || !DNS_NAME.test(zone.replace(/\.$/, ''))) throw new ConfigError('clusterDNS.zone', `expected a domain name, got ${show(zone)}`);
  return { server: v.server, zone: zone.replace(/\.$/, '') };
}

/**
 * Capability `dns` (CNI conventions): `{servers, searches, options}`, what
 * the kubelet computed from the pod's dnsPolicy. Without servers it says
 * nothing (as the reference Windows plugins read it).
 */
function parseRuntimeDns(v: unknown): Dns | undefined {
  if (v === undefined || v === null) return undefined;
  const f = 'runtimeConfig.dns';
  if (!isObject(v)) throw new ConfigError(f, `expected {"servers": [IP], "searches": [name], "options": [option]}, got ${show(v)}`);
  const list = (k: string): string[] => {
    const x = v[k];
    if (x === undefined || x === null) return [];
    if (!Array.isArray(x) || x.some((e) => typeof e !== 'string' || e === '')) throw new ConfigError(`${f}.${k}`, `expected a list of strings, got ${show(x)}`);
    return x as string[];
  };
  const servers = list('servers');
  servers.forEach((s, i) => { if (!isIP(s)) throw new ConfigError(`${f}.servers[${i}]`, `${show(s)} is not an IP address`); });
  const searches = list('searches');
  const options = list('options');
  if (!servers.length) return undefined;
  const out: Dns = { nameservers: servers };
  if (searches.length) out.search = searches;
  if (options.length) out.options = options;
  return out;
}

/** Parses the cluster fields of a call. `cniArgs` is CNI_ARGS already split into pairs. */
export function parseClusterConf(conf: NetConf, containerId: string, cniArgs: Record<string, string>): ClusterConf {
  const raw = conf.raw as Json;
  const rc = conf.runtimeConfig as Json;
  const argsCni = conf.args && isObject(conf.args.cni) ? (conf.args.cni as Json) : {};
  if (conf.args?.cni !== undefined && !isObject(conf.args.cni)) throw new ConfigError('args.cni', `expected an object, got ${show(conf.args.cni)}`);

  const store = raw.store === undefined || raw.store === null ? DEFAULT_STORE : raw.store;
  if (typeof store !== 'string' || store.trim() === '') throw new ConfigError('store', `expected a store spec such as "file:/var/lib/meshwork" or "etcd:http://host:2379", got ${show(store)}`);
  const node = raw.node === undefined || raw.node === null ? os.hostname() : raw.node;
  if (typeof node !== 'string' || node === '' || node.includes('/')) throw new ConfigError('node', `expected a node name, got ${show(node)}`);

  const podNamespace = cniArgs.K8S_POD_NAMESPACE || DEFAULT_POD_NAMESPACE;
  const pod = cniArgs.K8S_POD_NAME || containerId;

  // Most specific wins: config < runtimeConfig < args.cni.
  let mesh: MeshOptions | false | undefined;
  for (const [v, f] of [[raw.mesh, 'mesh'], [rc.mesh, 'runtimeConfig.mesh'], [argsCni.mesh, 'args.cni.mesh']] as const) {
    const m = parseMesh(v, f);
    if (m !== undefined) mesh = m;
  }
  const labels = { ...parseLabels(rc.labels, 'runtimeConfig.labels'), ...parseLabels(argsCni.labels, 'args.cni.labels') };
  const hostname = parseName(argsCni.hostname, 'args.cni.hostname') ?? parseName(rc.hostname, 'runtimeConfig.hostname');
  const aliases = parseAliases(argsCni.aliases, 'args.cni.aliases') ?? parseAliases(rc.aliases, 'runtimeConfig.aliases') ?? [];

  const out: ClusterConf = { store, node, podNamespace, pod, labels, aliases };
  if (hostname) out.hostname = hostname;
  if (mesh) out.mesh = mesh;
  const dns = parseClusterDns(raw.clusterDNS);
  if (dns) out.clusterDNS = dns;
  const runtimeDNS = parseRuntimeDns(rc.dns);
  if (runtimeDNS) out.runtimeDNS = runtimeDNS;
  return out;
}
