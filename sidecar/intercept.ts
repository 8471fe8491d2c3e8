/**
 * Transparent interception, as istio-init does it, with nftables in the pod's
 * namespace: outbound TCP is redirected to the sidecar's outbound port, inbound
 * TCP to its inbound port. Excluded: the sidecar's own sockets (it runs with a
 * dedicated group id, matched by `meta skgid`, so it keeps uid 0 and needs no
 * socket marks), loopback, DNS (53), the sidecar's own ports, and any ports or
 * CIDRs the caller lists. REDIRECT to a port nobody listens on answers with a
 * reset, so a pod whose sidecar is down fails fast (connection refused) and
 * recovers as soon as the sidecar listens again.
 */
import { spawnSync } from 'node:child_process';
import { MeshworkError } from '../lib/errors';
import { inNetnsSync } from '../lib/netns';
import { nftBinary } from '../cni/nft/binary';

export const TABLE = 'meshwork_sidecar';
export const DEFAULT_GID = 1337;

export interface InterceptionOptions {
  outboundPort: number;
  inboundPort: number;
  /** Group id the sidecar runs with; its traffic is never redirected. */
  sidecarGid?: number;
  /** Ports never redirected inbound (the admin port belongs here, for scraping). */
  excludeInboundPorts?: number[];
  excludeOutboundPorts?: number[];
  excludeOutboundCidrs?: string[];
  /** Only these inbound ports are redirected; default all. */
  includeInboundPorts?: number[];
}

export class InterceptionError extends MeshworkError {
  constructor(nsPath: string, what: string, cause?: unknown) {
    super('EINTERCEPT', `interception in ${nsPath}: ${what}`, { cause });
  }
}

const portList = (ps: number[]) => `{ ${ps.join(', ')} }`;

/** The nft script; pure, for tests and `--dry-run`. */
export function interceptionRules(o: InterceptionOptions): string {
  for (const p of [o.outboundPort, o.inboundPort, ...(o.excludeInboundPorts ?? []), ...(o.excludeOutboundPorts ?? []), ...(o.includeInboundPorts ?? [])]) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new MeshworkError('EINVAL', `interception: port ${p} is not a port number`);
  }
  const gid = o.sidecarGid ?? DEFAULT_GID;
  const v4 = (o.excludeOutboundCidrs ?? []).filter((c) => !c.includes(':'));
  const v6 = (o.excludeOutboundCidrs ?? []).filter((c) => c.includes(':'));
  const exclIn = [o.outboundPort, o.inboundPort, ...(o.excludeInboundPorts ?? [])];
  const lines = [
    `table inet ${TABLE} {`,
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    `    meta skgid ${gid} return`,
    '    oifname "lo" return',
    '    ip daddr 127.0.0.0/8 return',
    '    ip6 daddr ::1 return',
    '    meta l4proto != tcp return',
    '    tcp dport 53 return',
    ...(o.excludeOutboundPorts?.length ? [`    tcp dport ${portList(o.excludeOutboundPorts)} return`] : []),
    ...(v4.length ? [`    ip daddr { ${v4.join(', ')} } return`] : []),
    ...(v6.length ? [`    ip6 daddr { ${v6.join(', ')} } return`] : []),
    `    meta l4proto tcp redirect to :${o.outboundPort}`,
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority -100; policy accept;',
    '    iifname "lo" return',
    '    meta l4proto != tcp return',
    `    tcp dport ${portList(exclIn)} return`,
    ...(o.includeInboundPorts?.length ? [`    tcp dport != ${portList(o.includeInboundPorts)} return`] : []),
    `    meta l4proto tcp redirect to :${o.inboundPort}`,
    '  }',
    '}',
  ];
  return `${lines.join('\n')}\n`;
}

function nft(nsPath: string, script: string): { code: number; stderr: string } {
  return inNetnsSync(nsPath, () => {
    const r = spawnSync(nftBinary(), ['-f', '-'], { input: script, encoding: 'utf8' });
    if (r.error) throw new InterceptionError(nsPath, `cannot run nft: ${r.error.message}`, r.error);
    return { code: r.status ?? -1, stderr: r.stderr ?? '' };
  });
}

/** Loads (or replaces) the interception table in the namespace at `nsPath`, atomically. */
export function installInterception(nsPath: string, opts: InterceptionOptions): void {
  // One nft transaction: create-if-missing, flush, then define; never a half-loaded table.
  const script = `table inet ${TABLE}\ndelete table inet ${TABLE}\n${interceptionRules(opts)}`;
  const r = nft(nsPath, script);
  if (r.code !== 0) throw new InterceptionError(nsPath, `nft refused the rules: ${r.stderr.trim()}`);
}

/** Removes the interception table; succeeds when it (or the namespace) is already gone. */
export function removeInterception(nsPath: string): void {
  let r: { code: number; stderr: string };
  try {
    r = nft(nsPath, `table inet ${TABLE}\ndelete table inet ${TABLE}\n`);
  } catch (err) {
    if ((err as MeshworkError).code === 'ENETNS') return;
    throw err;
  }
  if (r.code !== 0) throw new InterceptionError(nsPath, `nft could not remove the rules: ${r.stderr.trim()}`);
}

/** Whether the namespace has the interception table (for CHECK). */
export function hasInterception(nsPath: string): boolean {
  return inNetnsSync(nsPath, () => spawnSync(nftBinary(), ['list', 'table', 'inet', TABLE], { encoding: 'utf8' }).status === 0);
}
