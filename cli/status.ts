/**
 * `meshwork status`: this host as the mesh sees it — its node record and pod
 * subnet, its peers, the pods on it, the services, DNS health, the agent and
 * the sidecars with their breaker states. Each part is gathered on its own
 * with a short timeout; a part that is missing is reported ("agent not
 * reachable at ...") and the rest still shows.
 */
import * as dns from 'node:dns';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { Command } from 'commander';
import { openStore, parseStoreSpec, DEFAULT_STORE_SPEC } from '../store/open';
import { MeshworkError } from '../lib/errors';
import { keys } from '../store/keys';
import type { Store } from '../store/types';
import type { EndpointRecord, NodeRecord } from '../store/records';
import type { Service } from '../policies/model';
import { formatTable } from '../canary/view';

export interface StatusOptions {
  storeSpec?: string;
  node: string;
  agentUrl: string;
  sidecarUrls: string[];
  timeoutMs: number;
  clusterDomain: string;
}

export interface SidecarEndpoint { service: string; address: string; pod?: string; subsets: string[]; breaker: string; ejected: boolean }

export interface StatusReport {
  node: string;
  store: { spec: string; ok: boolean; error?: string };
  record?: NodeRecord;
  subnets: string[];
  peers: Array<{ name: string; underlay: string; subnets: string[] }>;
  pods: Array<{ pod: string; network: string; ips: string[]; ready: boolean; mesh: boolean }>;
  services: Array<{ service: string; clusterIP: string; ports: string; endpoints: number; ready: number }>;
  dns: { server?: string; ok: boolean; detail: string };
  agent: { url: string; ok: boolean; detail: string; health?: Record<string, unknown> };
  sidecars: Array<{ url: string; ok: boolean; detail: string; ready?: boolean; endpoints: SidecarEndpoint[] }>;
  problems: string[];
}

/**
 * Opens the store for reading only: a file store that does not exist yet is
 * reported rather than created (opening one makes its directory).
 */
export async function openExistingStore(spec: string = process.env.MESHWORK_STORE ?? DEFAULT_STORE_SPEC): Promise<Store> {
  const s = parseStoreSpec(spec);
  if (s.kind === 'file' && !fs.existsSync(s.dir)) throw new MeshworkError('ENOSTORE', `no store at ${s.dir} (is meshwork installed and the agent running?)`);
  return openStore(spec);
}

const errText = (err: any): string => {
  const cause = err?.cause?.code ?? err?.cause?.message;
  if (err?.name === 'TimeoutError') return 'timed out';
  return cause ? String(cause) : String(err?.message ?? err);
};

async function getJson(url: string, timeoutMs: number): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body: any = text;
  try { body = JSON.parse(text); } catch { /* plain text */ }
  return { status: res.status, body };
}

function parseDocs<T>(items: { value: string }[], kind?: string): T[] {
  const out: T[] = [];
  for (const kv of items) {
    try {
      const v = JSON.parse(kv.value);
      if (!kind) { out.push(v); continue; }
      const doc = v?.kind === kind ? v : Object.values(v ?? {}).find((x: any) => x?.kind === kind);
      if (doc) out.push(doc as T);
    } catch { /* a torn record is skipped */ }
  }
  return out;
}

/** Asks the node's DNS server for a cluster name: any answer (even NXDOMAIN) means it serves. */
export async function probeDns(server: string, name: string, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const r = new dns.promises.Resolver({ timeout: timeoutMs, tries: 1 });
  try {
    r.setServers([server]);
  } catch (err: any) {
    return { ok: false, detail: `bad DNS server address ${server}: ${err.message}` };
  }
  try {
    const addrs = await r.resolve4(name);
    return { ok: true, detail: `${name} -> ${addrs.join(', ')}` };
  } catch (err: any) {
    if (err.code === 'ENOTFOUND' || err.code === 'ENODATA') return { ok: true, detail: `answers (${name}: ${err.code === 'ENOTFOUND' ? 'NXDOMAIN' : 'no A record'})` };
    return { ok: false, detail: `no answer from ${server}: ${err.code ?? err.message}` };
  }
}

async function fromStore(store: Store, o: StatusOptions, r: StatusReport): Promise<void> {
  const [nodes, eps, svcs] = await Promise.all([store.list(keys.nodes()), store.list(keys.endpoints()), store.list(keys.policies('Service'))]);
  const all = parseDocs<NodeRecord>(nodes.items);
  r.record = all.find((n) => n.name === o.node);
  if (!r.record) r.problems.push(`node "${o.node}" is not registered in the store${all.length ? ` (known: ${all.map((n) => n.name).join(', ')})` : ''}; is the agent running?`);
  r.subnets = Object.entries(r.record?.podSubnets ?? {}).flatMap(([net, list]) => list.map((s) => `${s} (${net})`));
  r.peers = all.filter((n) => n.name !== o.node).map((n) => ({ name: n.name, underlay: n.underlay, subnets: Object.values(n.podSubnets ?? {}).flat() }));
  const endpoints = parseDocs<EndpointRecord>(eps.items);
  r.pods = endpoints.filter((e) => e.node === o.node).map((e) => ({ pod: `${e.namespace}/${e.pod}`, network: e.network, ips: e.ips, ready: e.ready, mesh: !!e.mesh }));
  const services = parseDocs<Service>(svcs.items, 'Service');
  r.services = services.map((s) => {
    const sel = Object.entries(s.spec.selector ?? {});
    const mine = endpoints.filter((e) => e.namespace === s.metadata.namespace && sel.length > 0 && sel.every(([k, v]) => e.labels[k] === v));
    return {
      service: `${s.metadata.name}.${s.metadata.namespace}`,
      clusterIP: s.spec.clusterIP ?? (s.spec.type === 'ExternalName' ? `-> ${s.spec.externalName}` : 'pending'),
      ports: s.spec.ports.map((p) => `${p.port}/${p.protocol}`).join(','),
      endpoints: mine.length,
      ready: mine.filter((e) => e.ready).length,
    };
  });
}

export async function collectStatus(o: StatusOptions, open: (spec?: string) => Promise<Store> = openExistingStore): Promise<StatusReport> {
  const spec = o.storeSpec ?? process.env.MESHWORK_STORE ?? DEFAULT_STORE_SPEC;
  const r: StatusReport = {
    node: o.node, store: { spec, ok: false }, subnets: [], peers: [], pods: [], services: [],
    dns: { ok: false, detail: 'unknown' }, agent: { url: o.agentUrl, ok: false, detail: '' }, sidecars: [], problems: [],
  };
  const storePart = (async () => {
    let store: Store | undefined;
    try {
      store = await open(spec);
      await fromStore(store, o, r);
      r.store.ok = true;
    } catch (err) {
      r.store.error = errText(err);
      r.problems.push(`store not reachable at ${spec}: ${r.store.error}`);
    } finally {
      await store?.close().catch(() => undefined);
    }
  })();
  const agentPart = (async () => {
    try {
      const { status, body } = await getJson(new URL('/healthz', o.agentUrl).toString(), o.timeoutMs);
      r.agent.health = typeof body === 'object' ? body : undefined;
      r.agent.ok = status === 200;
      r.agent.detail = status === 200 ? 'healthy' : `unhealthy (HTTP ${status})`;
      if (!r.agent.ok) r.problems.push(`agent at ${o.agentUrl} reports unhealthy (HTTP ${status})`);
    } catch (err) {
      r.agent.detail = `not reachable at ${o.agentUrl} (${errText(err)})`;
      r.problems.push(`agent ${r.agent.detail}`);
    }
  })();
  const sidecarPart = Promise.all(o.sidecarUrls.map(async (url) => {
    const sc: StatusReport['sidecars'][number] = { url, ok: false, detail: '', endpoints: [] };
    r.sidecars.push(sc);
    try {
      const [ready, eps] = await Promise.all([
        getJson(new URL('/ready', url).toString(), o.timeoutMs),
        getJson(new URL('/endpoints', url).toString(), o.timeoutMs),
      ]);
      sc.ready = ready.status === 200;
      sc.ok = eps.status === 200 && Array.isArray(eps.body);
      sc.detail = sc.ok ? (sc.ready ? 'ready' : 'not ready') : `unexpected answer from /endpoints (HTTP ${eps.status})`;
      for (const up of sc.ok ? eps.body : []) {
        for (const e of up.endpoints ?? []) {
          sc.endpoints.push({ service: String(up.service), address: String(e.address), pod: e.pod, subsets: e.subsets ?? [], breaker: String(e.breaker ?? 'unknown'), ejected: !!e.ejected });
        }
      }
      if (!sc.ready) r.problems.push(`sidecar at ${url} is not ready`);
    } catch (err) {
      sc.detail = `not reachable at ${url} (${errText(err)})`;
      r.problems.push(`sidecar ${sc.detail}`);
    }
  }));
  await storePart;
  // DNS needs the node record (its DNS address) and a name to ask for.
  const dnsPart = (async () => {
    const server = r.record?.dns;
    if (!server) { r.dns = { ok: false, detail: r.record ? 'this node runs no DNS server (no dns in its node record)' : 'unknown (node not registered)' }; return; }
    const name = r.services[0] ? `${r.services[0].service}.svc.${o.clusterDomain}` : `kubernetes.default.svc.${o.clusterDomain}`;
    r.dns = { server, ...(await probeDns(server, name, o.timeoutMs)) };
    if (!r.dns.ok) r.problems.push(`DNS ${r.dns.detail}`);
  })();
  await Promise.all([agentPart, sidecarPart, dnsPart]);
  r.sidecars.sort((a, b) => a.url.localeCompare(b.url));
  return r;
}

export function renderStatus(r: StatusReport): string {
  const out: string[] = [];
  const mark = (ok: boolean) => (ok ? 'ok' : 'DOWN');
  out.push(`Node      ${r.node}${r.record ? `  underlay ${r.record.underlay}${r.record.vtepMac ? `  vtep ${r.record.vtepMac}` : ''}` : '  (not registered)'}`);
  out.push(`Subnet    ${r.subnets.join(', ') || '-'}`);
  out.push(`Store     ${mark(r.store.ok)}  ${r.store.spec}${r.store.error ? `: ${r.store.error}` : ''}`);
  out.push(`Agent     ${mark(r.agent.ok)}  ${r.agent.detail}`);
  out.push(`DNS       ${mark(r.dns.ok)}  ${r.dns.server ? `${r.dns.server}: ` : ''}${r.dns.detail}`);
  out.push('');
  const section = (title: string, rows: string[][], empty: string) => {
    out.push(`${title}:`);
    out.push(rows.length > 1 ? formatTable(rows).replace(/^/gm, '  ').trimEnd() : `  ${empty}`);
    out.push('');
  };
  section('Peers', [['NODE', 'UNDERLAY', 'SUBNETS'], ...r.peers.map((p) => [p.name, p.underlay, p.subnets.join(', ') || '-'])], 'none');
  section('Pods on this node', [['POD', 'NETWORK', 'ADDRESSES', 'READY', 'SIDECAR'], ...r.pods.map((p) => [p.pod, p.network, p.ips.join(', '), p.ready ? 'yes' : 'no', p.mesh ? 'yes' : 'no'])], 'none');
  section('Services', [['SERVICE', 'CLUSTER-IP', 'PORTS', 'ENDPOINTS'], ...r.services.map((s) => [s.service, s.clusterIP, s.ports, `${s.ready}/${s.endpoints} ready`])], 'none');
  const scRows = [['SIDECAR', 'STATE', 'UPSTREAM', 'ENDPOINT', 'SUBSETS', 'BREAKER', 'EJECTED']];
  for (const s of r.sidecars) {
    if (s.endpoints.length === 0) scRows.push([s.url, s.detail, '-', '-', '-', '-', '-']);
    for (const e of s.endpoints) scRows.push([s.url, s.detail, e.service, e.pod ? `${e.address} (${e.pod})` : e.address, e.subsets.join(',') || '-', e.breaker, e.ejected ? 'yes' : 'no']);
  }
  section('Sidecars', scRows, 'none given (pass --sidecar http://ADMIN-ADDR for each)');
  if (r.problems.length) {
    out.push('Problems:');
    for (const p of r.problems) out.push(`  - ${p}`);
    out.push('');
  }
  return out.join('\n');
}

export function register(program: Command): void {
  program.command('status')
    .description("this host in the mesh: node, subnet, peers, pods, services, DNS, agent and sidecars' breakers")
    .option('--json', 'print JSON')
    .option('--store <spec>', 'cluster store; default $MESHWORK_STORE or file:/var/lib/meshwork')
    .option('--node <name>', "this node's name (default: hostname)")
    .option('--agent <url>', "the agent's HTTP endpoint", 'http://127.0.0.1:9464')
    .option('--sidecar <url>', "a sidecar's admin endpoint (repeatable)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--cluster-domain <domain>', 'cluster DNS domain', 'cluster.local')
    .option('--timeout <ms>', 'per-part timeout', (v: string) => {
      // AbortSignal.timeout wants a whole number of ms; say so naming the flag, not Node's option.
      if (!/^\d+$/.test(v) || Number(v) < 1) throw new MeshworkError('EUSAGE', `--timeout ${v}: expected milliseconds, a whole number above 0`);
      return Number(v);
    }, 1500)
    .action(async (f: { json?: boolean; store?: string; node?: string; agent: string; sidecar: string[]; clusterDomain: string; timeout: number }) => {
      const report = await collectStatus({
        storeSpec: f.store, node: f.node ?? os.hostname(), agentUrl: f.agent, sidecarUrls: f.sidecar, timeoutMs: f.timeout, clusterDomain: f.clusterDomain,
      });
      process.stdout.write(f.json ? JSON.stringify(report, null, 2) + '\n' : renderStatus(report));
    });
}
