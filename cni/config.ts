/**
 * The network config on stdin, validated once at the edge: JSON decoding
 * (code 6), the well-known fields' types (code 7), `cniVersion` (code 1),
 * runtimeConfig capabilities and GC's valid-attachments. Driver-specific
 * fields are validated by the driver's own loader.
 */
import { isIP } from 'node:net';
import { chooseVersion, type SpecVersion } from './version';
import { CniCode, CniError, ConfigError, type Attachment, type Dns, type NetConf, type PortMapping } from './types';

type Json = Record<string, unknown>;
export const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
export const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v) ?? String(v));

/** SPEC.md: starts alphanumeric, then alphanumerics, "_", "." or "-". */
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Decodes stdin; error code 6 when it is not a JSON object. */
export function decodeConfig(stdin: Buffer): Json {
  let v: unknown;
  try {
    v = JSON.parse(stdin.toString('utf8'));
  } catch (err) {
    throw new CniError(CniCode.decode, `failed to decode network config: ${(err as Error).message}`);
  }
  if (!isObject(v)) throw new CniError(CniCode.decode, `failed to decode network config: expected a JSON object, got ${show(v)}`);
  return v;
}

function optObject(o: Json, key: string, field = key): Json | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw new ConfigError(field, `expected an object, got ${show(v)}`);
  return v;
}

function optStrings(o: Json, key: string, field: string): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ConfigError(field, `expected a list of strings, got ${show(v)}`);
  return v as string[];
}

function parseDns(o: Json | undefined, field: string): Dns | undefined {
  if (!o) return undefined;
  const dns: Dns = {};
  const ns = optStrings(o, 'nameservers', `${field}.nameservers`);
  ns?.forEach((s, i) => { if (!isIP(s)) throw new ConfigError(`${field}.nameservers[${i}]`, `${show(s)} is not an IP address`); });
  if (ns) dns.nameservers = ns;
  if (o.domain !== undefined) {
    if (typeof o.domain !== 'string') throw new ConfigError(`${field}.domain`, `expected a string, got ${show(o.domain)}`);
    dns.domain = o.domain;
  }
  const search = optStrings(o, 'search', `${field}.search`);
  if (search) dns.search = search;
  const options = optStrings(o, 'options', `${field}.options`);
  if (options) dns.options = options;
  return dns;
}

const isPort = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;

export function parsePortMappings(v: unknown, field = 'runtimeConfig.portMappings'): PortMapping[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ConfigError(field, `expected a list, got ${show(v)}`);
  const seen = new Map<string, number>();
  return v.map((m, i) => {
    const f = `${field}[${i}]`;
    if (!isObject(m)) throw new ConfigError(f, `expected an object, got ${show(m)}`);
    if (!isPort(m.hostPort)) throw new ConfigError(`${f}.hostPort`, `expected a port 1-65535, got ${show(m.hostPort)}`);
    if (!isPort(m.containerPort)) throw new ConfigError(`${f}.containerPort`, `expected a port 1-65535, got ${show(m.containerPort)}`);
    const protocol = m.protocol === undefined || m.protocol === '' ? 'tcp' : typeof m.protocol === 'string' ? m.protocol.toLowerCase() : m.protocol;
    if (protocol !== 'tcp' && protocol !== 'udp') throw new ConfigError(`${f}.protocol`, `expected "tcp" or "udp", got ${show(m.protocol)}`);
    const pm: PortMapping = { hostPort: m.hostPort, containerPort: m.containerPort, protocol };
    if (m.hostIP !== undefined && m.hostIP !== '' && m.hostIP !== '0.0.0.0' && m.hostIP !== '::') {
      if (typeof m.hostIP !== 'string' || !isIP(m.hostIP)) throw new ConfigError(`${f}.hostIP`, `expected an IP address, got ${show(m.hostIP)}`);
      pm.hostIP = m.hostIP;
    }
    const key = `${pm.hostIP ?? '*'}/${pm.protocol}/${pm.hostPort}`;
    if (seen.has(key)) throw new ConfigError(`${f}.hostPort`, `${pm.protocol} port ${pm.hostPort} already mapped by ${field}[${seen.get(key)}]`);
    seen.set(key, i);
    return pm;
  });
}

function parseAttachments(v: unknown, field: string): Attachment[] {
  if (!Array.isArray(v)) throw new ConfigError(field, `expected a list, got ${show(v)}`);
  return v.map((a, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      throw new ConfigError(`${field}[${i}]`, `expected {"containerID": string, "ifname": string}, got ${show(a)}`);
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/** Validates the well-known fields; returns the typed config and the spec version of this call. */
export function parseNetConf(raw: Json): { conf: NetConf; version: SpecVersion } {
  if (raw.cniVersion !== undefined && typeof raw.cniVersion !== 'string') throw new ConfigError('cniVersion', `expected a version string, got ${show(raw.cniVersion)}`);
  if (raw.cniVersions !== undefined) optStrings(raw, 'cniVersions', 'cniVersions');
  const version = chooseVersion(raw.cniVersion, raw.cniVersions);
  if (typeof raw.name !== 'string' || !NETWORK_NAME.test(raw.name)) {
    throw new ConfigError('name', `expected a network name (letter or digit, then letters, digits, "_", "." or "-"), got ${show(raw.name)}`);
  }
  if (typeof raw.type !== 'string' || raw.type === '') throw new ConfigError('type', `expected the plugin name, got ${show(raw.type)}`);
  const driver = raw.driver ?? 'bridge';
  if (typeof driver !== 'string') throw new ConfigError('driver', `expected a string, got ${show(driver)}`);
  const ipam = optObject(raw, 'ipam');
  if (ipam && ipam.type !== undefined && typeof ipam.type !== 'string') throw new ConfigError('ipam.type', `expected a string, got ${show(ipam.type)}`);
  const runtimeConfig = optObject(raw, 'runtimeConfig') ?? {};
  const rc: NetConf['runtimeConfig'] = { ...runtimeConfig };
  rc.portMappings = parsePortMappings(runtimeConfig.portMappings);
  if (runtimeConfig.mac !== undefined) {
    if (typeof runtimeConfig.mac !== 'string' || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(runtimeConfig.mac)) {
      throw new ConfigError('runtimeConfig.mac', `expected a MAC address, got ${show(runtimeConfig.mac)}`);
    }
    rc.mac = runtimeConfig.mac.toLowerCase();
  }
  const conf: NetConf = {
    cniVersion: version,
    name: raw.name,
    type: raw.type,
    driver,
    ipam,
    dns: parseDns(optObject(raw, 'dns'), 'dns'),
    runtimeConfig: rc,
    args: optObject(raw, 'args'),
    prevResult: optObject(raw, 'prevResult'),
    raw,
  };
  // libcni sends both spellings (an early 1.1.0 draft used the second).
  const va = raw['cni.dev/valid-attachments'] ?? raw['cni.dev/attachments'];
  if (va !== undefined) conf.validAttachments = parseAttachments(va, 'cni.dev/valid-attachments');
  return { conf, version };
}

/** Reads an optional typed field of a driver's config (used by driver loaders). */
export const field = {
  bool(o: Json, key: string, dflt: boolean): boolean {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') throw new ConfigError(key, `expected true or false, got ${show(v)}`);
    return v;
  },
  str(o: Json, key: string, dflt?: string): string | undefined {
    const v = o[key];
    if (v === undefined || v === null || v === '') return dflt;
    if (typeof v !== 'string') throw new ConfigError(key, `expected a string, got ${show(v)}`);
    return v;
  },
  int(o: Json, key: string, min: number, max: number, dflt?: number): number | undefined {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) throw new ConfigError(key, `expected an integer ${min}-${max}, got ${show(v)}`);
    return v as number;
  },
};
