/**
 * The agent's configuration: defaults first, then validation, once, at the
 * edge. Every error names the flag/field and what was expected.
 */
import { isIP } from 'node:net';
import { MeshworkError } from '../lib/errors';
import { DEFAULT_STATE_DIR } from './node-state';
import { formatNet, parseNet, subnetCount, type Net } from './subnet-math';

export class AgentConfigError extends MeshworkError {
  constructor(field: string, message: string) { super('EAGENT_CONFIG', `${field}: ${message}`); }
}

export interface AgentConfig {
  node: string;
  underlay: string;
  network: string;
  /** One IPv4 and/or one IPv6 cluster CIDR, in network form. */
  clusterCidrs: string[];
  /** Pod subnet prefix length per family. */
  subnetLen: { 4: number; 6: number };
  vni: number;
  port: number;
  vxlanName: string;
  bridgeName: string;
  /** Overlay MTU; default: the underlay link's MTU minus the VXLAN overhead. */
  mtu?: number;
  /** Outer UDP checksum on an IPv4 underlay (default off, see cni/netlink/vxlan.ts). */
  udpCsum: boolean;
  /** Masquerade pods' traffic to destinations outside the cluster CIDRs (default on). */
  ipMasq: boolean;
  leaseTtlSeconds: number;
  /** Full re-read of kernel and devices every so often, to repair drift. */
  resyncSeconds: number;
  stateDir: string;
  labels: Record<string, string>;
  /** Address of the DNS server this agent hosts, published in the node record. */
  dns?: string;
}

type Numeric = 'vni' | 'port' | 'mtu' | 'leaseTtlSeconds' | 'resyncSeconds';

/** What a caller hands in: numbers may still be flag text, checked (and named) here once. */
export type AgentConfigInput = Partial<Omit<AgentConfig, 'subnetLen' | 'clusterCidrs' | Numeric>> & {
  node?: string; underlay?: string;
  clusterCidrs?: string[] | string;
  subnetLen?: number | string;
  subnetLen6?: number | string;
} & { [K in Numeric]?: number | string };

const NAME = /^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$/;
const IFNAME = /^[a-zA-Z0-9_.-]{1,15}$/;

function int(field: string, v: unknown, min: number, max: number, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw new AgentConfigError(field, `expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

export function agentConfig(i: AgentConfigInput): AgentConfig {
  if (!i.node || !NAME.test(i.node)) throw new AgentConfigError('--node', `expected a node name (letters, digits, "-", "_", "."), got ${JSON.stringify(i.node)}`);
  if (!i.underlay || !isIP(i.underlay)) throw new AgentConfigError('--underlay', `expected this host's underlay IP address, got ${JSON.stringify(i.underlay)}`);
  const network = i.network ?? 'overlay';
  if (!NAME.test(network)) throw new AgentConfigError('--network', `expected a network name, got ${JSON.stringify(network)}`);
  const cidrs = typeof i.clusterCidrs === 'string' ? i.clusterCidrs.split(',') : i.clusterCidrs ?? ['10.244.0.0/16'];
  const subnetLen = { 4: int('--subnet-len', i.subnetLen, 8, 30, 24), 6: int('--subnet-len6', i.subnetLen6, 16, 124, 64) };
  const nets: Net[] = [];
  for (const c of cidrs.map((s) => s.trim()).filter(Boolean)) {
    let n: Net;
    try { n = parseNet(c, 'cluster CIDR'); } catch (err) { throw new AgentConfigError('--cluster-cidr', (err as Error).message); }
    if (nets.some((m) => m.family === n.family)) throw new AgentConfigError('--cluster-cidr', `more than one IPv${n.family} cluster CIDR (${c})`);
    try { subnetCount(n, subnetLen[n.family]); } catch (err) { throw new AgentConfigError(n.family === 4 ? '--subnet-len' : '--subnet-len6', (err as Error).message); }
    nets.push(n);
  }
  if (nets.length === 0) throw new AgentConfigError('--cluster-cidr', 'at least one cluster CIDR is required');
  const vni = int('--vni', i.vni, 1, 0xffffff, 1);
  const vxlanName = i.vxlanName ?? `mw.vx${vni}`.slice(0, 15);
  const bridgeName = i.bridgeName ?? 'mw.br0';
  if (!IFNAME.test(vxlanName)) throw new AgentConfigError('--vxlan-name', `expected a link name of at most 15 characters, got ${JSON.stringify(vxlanName)}`);
  if (!IFNAME.test(bridgeName)) throw new AgentConfigError('--bridge', `expected a link name of at most 15 characters, got ${JSON.stringify(bridgeName)}`);
  return {
    node: i.node,
    underlay: i.underlay,
    network,
    clusterCidrs: nets.map(formatNet),
    subnetLen,
    vni,
    port: int('--vxlan-port', i.port, 1, 65535, 8472),
    vxlanName,
    bridgeName,
    mtu: i.mtu === undefined ? undefined : int('--mtu', i.mtu, 576, 65535, 1450),
    udpCsum: i.udpCsum ?? false,
    ipMasq: i.ipMasq ?? true,
    leaseTtlSeconds: int('--lease-ttl', i.leaseTtlSeconds, 1, 3600, 15),
    resyncSeconds: int('--resync', i.resyncSeconds, 1, 86400, 30),
    stateDir: i.stateDir ?? DEFAULT_STATE_DIR,
    labels: i.labels ?? {},
    dns: i.dns,
  };
}
