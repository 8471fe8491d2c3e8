/**
 * The nftables table of one meshwork bridge network, as a pure function of
 * the network and its current attachments: masquerade, port mappings (DNAT
 * from the host's own addresses, for traffic from outside and from the host
 * itself) and isolation from other meshwork bridges. The whole table is
 * replaced in one `nft -f` transaction, so a reader never sees half of it.
 */
import { createHash } from 'node:crypto';
import { formatCidr, networkOf, parseCidr, parseIp } from '../netlink/ip';

/** IFLA_GROUP every meshwork bridge carries, so isolation needs no list of the other bridges. */
export const MESHWORK_BRIDGE_GROUP = 0x6d77;

export interface PortMapRule { hostPort: number; containerPort: number; protocol: 'tcp' | 'udp'; hostIP?: string; containerIp: string }

export interface NetworkRules {
  network: string;
  bridge: string;
  /** CIDRs of the attachments' addresses (any host bits; the network part is used). */
  addresses: string[];
  ipMasq: boolean;
  isolate: boolean;
  portMaps: PortMapRule[];
}

/** `meshwork-<name>`, with a hash suffix when the name had to be changed or is long. */
export function tableName(network: string): string {
  const clean = network.replace(/[^A-Za-z0-9_-]/g, '_');
  if (clean === network && clean.length <= 40) return `meshwork-${clean}`;
  const h = createHash('sha256').update(network).digest('hex').slice(0, 8);
  return `meshwork-${clean.slice(0, 40)}-${h}`;
}

const q = (s: string) => `"${s.replace(/["\\]/g, '')}"`;

function subnets(addresses: string[]): { v4: string[]; v6: string[] } {
  const v4 = new Set<string>(), v6 = new Set<string>();
  for (const a of addresses) {
    const c = parseCidr(a);
    (c.family === 4 ? v4 : v6).add(formatCidr(networkOf(c)));
  }
  return { v4: [...v4].sort(), v6: [...v6].sort() };
}

function dnatRule(p: PortMapRule): string | undefined {
  const fam = parseIp(p.containerIp).family;
  if (p.hostIP && parseIp(p.hostIP).family !== fam) return undefined;
  const match = p.hostIP ? `${fam === 4 ? 'ip' : 'ip6'} daddr ${p.hostIP}` : `meta nfproto ${fam === 4 ? 'ipv4' : 'ipv6'}`;
  const to = fam === 4 ? `ip to ${p.containerIp}:${p.containerPort}` : `ip6 to [${p.containerIp}]:${p.containerPort}`;
  return `${match} ${p.protocol} dport ${p.hostPort} dnat ${to}`;
}

/** The table body (without the replace preamble). */
export function tableBody(r: NetworkRules): string {
  const { v4, v6 } = subnets(r.addresses);
  const lines: string[] = [];
  const chain = (name: string, hook: string | undefined, rules: string[]) => {
    lines.push(`  chain ${name} {`);
    if (hook) lines.push(`    ${hook}`);
    for (const rule of rules) lines.push(`    ${rule}`);
    lines.push('  }');
  };
  const br = q(r.bridge);
  if (r.isolate) {
    chain('forward', 'type filter hook forward priority filter; policy accept;', [
      `iifname ${br} oifgroup ${MESHWORK_BRIDGE_GROUP} oifname != ${br} drop`,
    ]);
  }
  const dnat = r.portMaps.map(dnatRule).filter((x): x is string => !!x);
  if (dnat.length) {
    chain('portmap', undefined, dnat);
    chain('prerouting', 'type nat hook prerouting priority dstnat; policy accept;', ['fib daddr type local jump portmap']);
    chain('output', 'type nat hook output priority -100; policy accept;', ['fib daddr type local jump portmap']);
  }
  const post: string[] = [];
  if (r.ipMasq) {
    for (const n of v4) post.push(`ip saddr ${n} ip daddr != ${n} ip daddr != 224.0.0.0/4 masquerade`);
    for (const n of v6) post.push(`ip6 saddr ${n} ip6 daddr != ${n} ip6 daddr != ff00::/8 masquerade`);
  }
  if (dnat.length) {
    // A container reaching a published port of a peer on the same bridge: without
    // this the peer would answer it directly and the reply would miss the NAT.
    for (const n of v4) post.push(`ct status dnat ip saddr ${n} ip daddr ${n} masquerade`);
    for (const n of v6) post.push(`ct status dnat ip6 saddr ${n} ip6 daddr ${n} masquerade`);
  }
  if (post.length) chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', post);
  return lines.join('\n');
}

/** One atomic script for an `inet` table: create-if-missing, delete, recreate with `body`. */
export function replaceTableScript(name: string, body: string): string {
  return `${deleteTableScript(name)}table inet ${name} {\n${body}\n}\n`;
}

/** Idempotent removal of an `inet` table (adding first makes the delete never fail on a missing table). */
export function deleteTableScript(name: string): string {
  return `add table inet ${name}\ndelete table inet ${name}\n`;
}

/** The network's table, replaced atomically. */
export function replaceScript(r: NetworkRules): string {
  return replaceTableScript(tableName(r.network), tableBody(r));
}

export function deleteScript(network: string): string {
  return deleteTableScript(tableName(network));
}
