/**
 * The nft program for service VIPs, a pure function of the desired table
 * (agent/service-vips-model.ts). Laid out as kube-proxy's nftables mode does:
 *
 *   nat prerouting/output  -> services: `daddr . l4proto . dport` vmap -> svc-<hash>
 *   svc-<hash>             -> `numgen random mod N` vmap -> ep-<hash> (one chain per backend)
 *   ep-<hash>              -> hairpin mark if the client is the backend; dnat to backend
 *   filter prerouting/output (before nat) -> no-endpoints vmap -> reject (tcp reset / icmp),
 *                          and a VIP on a port it does not serve -> reject (as kube-proxy's cluster-ips-check)
 *   nat postrouting        -> masquerade what carries our mark
 *
 * One more rule covers hosts without br_netfilter: when the backend is reached
 * through the very interface the client came in on (client and backend on one
 * bridge), the backend's reply would go straight back over the bridge, never
 * un-DNATed; `fib daddr . iif oif exists` spots that and masquerades it.
 *
 * Chain names are hashes of the entry's identity; user names appear only in
 * comments, reduced to a safe alphabet. Addresses and ports come from the
 * model already canonical. `renderScript` replaces the whole table in one
 * transaction (create-if-missing, delete, create); `renderPatch` changes only
 * what differs, also in one transaction, so packets never see half of either.
 */
import { MeshworkError } from '../lib/errors';
import type { VipBackend, VipEntry, VipTable } from './service-vips-model';
import { shortHash } from './service-vips-model';

export const DEFAULT_TABLE = 'meshwork-svc';
/** A bit of its own: kube-proxy uses 0x4000, so running both never confuses the two. */
export const DEFAULT_MASQ_MARK = 0x00400000;

export interface RenderOptions {
  table: string;
  masqueradeMark: number;
  /** Masquerade connections whose client and backend share an interface (needed without br_netfilter). */
  sameLinkMasquerade: boolean;
}

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;

export class VipOptionsError extends MeshworkError {
  constructor(message: string) { super('EVIPOPTIONS', message); }
}

export function validateRenderOptions(o: RenderOptions): void {
  if (!TABLE_NAME.test(o.table)) throw new VipOptionsError(`table name ${JSON.stringify(o.table)} must match ${TABLE_NAME}`);
  if (!Number.isInteger(o.masqueradeMark) || o.masqueradeMark <= 0 || o.masqueradeMark > 0xffffffff || (o.masqueradeMark & (o.masqueradeMark - 1)) !== 0) {
    throw new VipOptionsError(`masquerade mark ${o.masqueradeMark} must be a single bit of a 32-bit mark`);
  }
}

/** Only characters nft's quoted strings take literally; anything else becomes `_`. */
export function safeComment(s: string): string {
  return s.replace(/[^A-Za-z0-9._:/+-]/g, '_').slice(0, 120);
}

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
const addrType = (f: 4 | 6) => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');
const ipKw = (f: 4 | 6) => (f === 4 ? 'ip' : 'ip6');
const hostPort = (f: 4 | 6, b: VipBackend) => (f === 4 ? `${b.ip}:${b.port}` : `[${b.ip}]:${b.port}`);

export const svcChain = (e: VipEntry) => `svc-${shortHash(e.id)}`;
export const epChain = (e: VipEntry, b: VipBackend) => `ep-${shortHash(`${e.id}|${b.ip}|${b.port}`)}`;

export function renderScript(t: VipTable, o: RenderOptions): string {
  validateRenderOptions(o);
  return `table inet ${o.table} {}\ndelete table inet ${o.table}\n${renderTable(objectsOf(t, o), o)}`;
}

/** Removes the table; creating it first makes the delete succeed when it is already gone. */
export function deleteScript(table: string): string {
  if (!TABLE_NAME.test(table)) throw new VipOptionsError(`table name ${JSON.stringify(table)} must match ${TABLE_NAME}`);
  return `table inet ${table} {}\ndelete table inet ${table}\n`;
}

/**
 * The parts of the table that depend on services and endpoints: the chains
 * `svc-*` and `ep-*`, and the elements of the sets and maps. Full and partial
 * syncs both come from this one description, so they cannot disagree.
 */
export interface VipObjects {
  /** Chain name -> its comment (if any) and rules. */
  chains: Map<string, { comment?: string; rules: string[] }>;
  /** Set or map name -> element key -> mapped verdict ('' for a set). */
  elements: Map<string, Map<string, string>>;
}

/**
 * vips: every VIP address; service-ports: every address . protocol . port a
 * VIP serves (with or without endpoints); service-ips and no-endpoints: where
 * each of those goes.
 */
export const ELEMENT_HOLDERS = ['vips4', 'vips6', 'service-ports4', 'service-ports6', 'service-ips4', 'service-ips6', 'no-endpoints4', 'no-endpoints6'] as const;

export function objectsOf(t: VipTable, o: RenderOptions): VipObjects {
  const mark = hex(o.masqueradeMark);
  const chains: VipObjects['chains'] = new Map();
  const elements: VipObjects['elements'] = new Map(ELEMENT_HOLDERS.map((n) => [n, new Map<string, string>()]));
  for (const e of t.entries) {
    const key = `${e.vip} . ${e.protocol} . ${e.port}`;
    elements.get(`vips${e.family}`)!.set(e.vip, '');
    elements.get(`service-ports${e.family}`)!.set(key, '');
    if (e.backends.length === 0) {
      elements.get(`no-endpoints${e.family}`)!.set(key, 'goto reject-no-endpoints');
      continue;
    }
    elements.get(`service-ips${e.family}`)!.set(key, `goto ${svcChain(e)}`);
    const pick = e.backends.length === 1
      ? `goto ${epChain(e, e.backends[0])}`
      : `numgen random mod ${e.backends.length} vmap { ${e.backends.map((b, i) => `${i} : goto ${epChain(e, b)}`).join(', ')} }`;
    chains.set(svcChain(e), { comment: safeComment(e.id), rules: [pick] });
    const ip = ipKw(e.family);
    for (const b of e.backends) {
      chains.set(epChain(e, b), { rules: [
        // Hairpin: a pod reaching itself through the VIP must see the reply come from the VIP.
        `${ip} saddr ${b.ip} meta mark set meta mark | ${mark}`,
        `meta l4proto ${e.protocol} dnat ${ip} to ${hostPort(e.family, b)}`,
      ] });
    }
  }
  return { chains, elements };
}

const isSet = (name: string) => name.startsWith('vips') || name.startsWith('service-ports');
const holderType = (name: string) => {
  const f = name.endsWith('6') ? 6 : 4;
  if (name.startsWith('vips')) return `type ${addrType(f)}`;
  return `type ${addrType(f)} . inet_proto . inet_service${isSet(name) ? '' : ' : verdict'}`;
};
const elementText = (key: string, value: string) => (value ? `${key} : ${value}` : key);

function renderTable(obj: VipObjects, o: RenderOptions): string {
  const out: string[] = [`table inet ${o.table} {`];
  const block = (head: string, body: string[]) => {
    out.push(`  ${head} {`);
    for (const l of body) out.push(`    ${l}`);
    out.push('  }');
  };
  const mark = hex(o.masqueradeMark);
  for (const name of ELEMENT_HOLDERS) {
    const els = [...obj.elements.get(name)!].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => elementText(k, v));
    block(`${isSet(name) ? 'set' : 'map'} ${name}`, [holderType(name), ...(els.length ? [`elements = { ${els.join(',\n      ')} }`] : [])]);
  }
  block('chain reject-no-endpoints', ['meta l4proto tcp reject with tcp reset', 'reject']);
  block('chain reject-unserved-port', ['meta l4proto tcp reject with tcp reset', 'reject']);
  for (const [name, c] of [...obj.chains].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    block(`chain ${name}`, [...(c.comment ? [`comment "${c.comment}"`] : []), ...c.rules]);
  }
  block('chain services', [
    'ip daddr . meta l4proto . th dport vmap @service-ips4',
    'ip6 daddr . meta l4proto . th dport vmap @service-ips6',
  ]);
  const refuse = [
    'ct state new ip daddr . meta l4proto . th dport vmap @no-endpoints4',
    'ct state new ip6 daddr . meta l4proto . th dport vmap @no-endpoints6',
    // Nothing would DNAT these: refused here rather than routed on, out of the default route, as if the VIP were a real host.
    'ct state new ip daddr @vips4 ip daddr . meta l4proto . th dport != @service-ports4 goto reject-unserved-port',
    'ct state new ip6 daddr @vips6 ip6 daddr . meta l4proto . th dport != @service-ports6 goto reject-unserved-port',
  ];
  // Filter chains run before nat (-110 < -100): a VIP port without a backend, or not served at all, is refused before routing.
  block('chain filter-prerouting', ['type filter hook prerouting priority -110; policy accept;', ...refuse]);
  block('chain filter-output', ['type filter hook output priority -110; policy accept;', ...refuse]);
  block('chain nat-prerouting', ['type nat hook prerouting priority -100; policy accept;', 'jump services']);
  block('chain nat-output', ['type nat hook output priority -100; policy accept;', 'jump services']);
  if (o.sameLinkMasquerade) {
    block('chain filter-forward', [
      'type filter hook forward priority 0; policy accept;',
      `ct state new ct original ip daddr @vips4 fib daddr . iif oif exists meta mark set meta mark | ${mark}`,
      `ct state new ct original ip6 daddr @vips6 fib daddr . iif oif exists meta mark set meta mark | ${mark}`,
    ]);
  }
  block('chain nat-postrouting', [
    'type nat hook postrouting priority 100; policy accept;',
    `meta mark & ${mark} == 0 return`,
    `meta mark set meta mark & ${hex(~o.masqueradeMark)}`,
    'masquerade',
  ]);
  out.push('}');
  return `${out.join('\n')}\n`;
}

/**
 * A partial sync, as kube-proxy does it for large clusters: only the chains
 * and elements that differ between `prev` (what the kernel holds) and `next`,
 * in one transaction. Order matters inside it: new chains before the elements
 * that jump to them, and chains deleted only after the last reference to them
 * (an element or another chain's rule) is gone. '' when nothing differs.
 */
export function renderPatch(prev: VipObjects, next: VipObjects, o: RenderOptions): string {
  validateRenderOptions(o);
  const T = `inet ${o.table}`;
  const lines: string[] = [];
  const same = (a: { comment?: string; rules: string[] }, b: { comment?: string; rules: string[] }) =>
    a.comment === b.comment && a.rules.length === b.rules.length && a.rules.every((r, i) => r === b.rules[i]);
  const byName = (m: Map<string, unknown>) => [...m.keys()].sort();
  // Endpoint chains first: a service chain's new rule may jump to them.
  const order = (names: string[]) => [...names.filter((n) => n.startsWith('ep-')), ...names.filter((n) => !n.startsWith('ep-'))];
  for (const name of order(byName(next.chains))) {
    const c = next.chains.get(name)!;
    const old = prev.chains.get(name);
    if (old && same(old, c)) continue;
    if (old) lines.push(`flush chain ${T} ${name}`);
    else lines.push(`add chain ${T} ${name}${c.comment ? ` { comment "${c.comment}"; }` : ''}`);
    for (const r of c.rules) lines.push(`add rule ${T} ${name} ${r}`);
  }
  for (const holder of ELEMENT_HOLDERS) {
    const a = prev.elements.get(holder) ?? new Map<string, string>(), b = next.elements.get(holder)!;
    const gone = [...a].filter(([k, v]) => b.get(k) !== v).map(([k]) => k).sort();
    const added = [...b].filter(([k, v]) => a.get(k) !== v).map(([k, v]) => elementText(k, v)).sort();
    if (gone.length) lines.push(`delete element ${T} ${holder} { ${gone.join(', ')} }`);
    if (added.length) lines.push(`add element ${T} ${holder} { ${added.join(', ')} }`);
  }
  // Service chains before endpoint chains: their rules are what referenced the endpoints.
  const removed = byName(prev.chains).filter((n) => !next.chains.has(n));
  for (const name of [...removed.filter((n) => !n.startsWith('ep-')), ...removed.filter((n) => n.startsWith('ep-'))]) {
    lines.push(`delete chain ${T} ${name}`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}
