/**
 * Drives meshwork-cni the way a runtime does, inside a host namespace the
 * test made: `ip netns exec <host> node dist/cni/main.js` with a clean CNI_*
 * environment and the network config on stdin. Also snapshots everything a
 * call could leave behind, to prove a failed call left nothing.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, type Lab, type Netns } from '../helpers/lab';

/**
 * Like Netns.run, but a child that exits without reading stdin cannot fail the
 * test with EPIPE (lab.ts's run writes stdin unguarded): stdin is ignored when
 * there is no input and write errors are swallowed when there is.
 */
export function runIn(ns: Netns, cmd: string, args: string[], input?: string, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
    child.on('error', (e) => { clearTimeout(timer); resolve({ code: -1, stdout, stderr: stderr + String(e) }); });
    if (child.stdin) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    }
  });
}

export const PLUGIN = path.join(repoRoot, 'dist', 'cni', 'main.js');

export interface PluginRun { code: number; stdout: string; stderr: string; json: any }

export interface CallEnv { command: string; containerId?: string; netns?: string; ifname?: string; args?: string; path?: string }

export async function callPlugin(host: Netns, env: CallEnv | Record<string, string>, conf: unknown): Promise<PluginRun> {
  const e: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    const key = { command: 'CNI_COMMAND', containerId: 'CNI_CONTAINERID', netns: 'CNI_NETNS', ifname: 'CNI_IFNAME', args: 'CNI_ARGS', path: 'CNI_PATH' }[k] ?? k;
    e[key] = String(v);
  }
  const input = typeof conf === 'string' ? conf : JSON.stringify(conf);
  const vars = Object.entries({ PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...e }).map(([k, v]) => `${k}=${v}`);
  const r = await runIn(host, 'env', ['-i', ...vars, process.execPath, PLUGIN], input);
  let json: any;
  try { json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined; } catch { json = undefined; }
  return { ...r, json };
}

/** A per-lab subnet pair: 10.X.Y.0/24 and fdXX:YYYY::/64 (X, Y from the lab id plus `n`). */
export function subnets(lab: Lab, n: number): { v4: string; v6: string; gw4: string; gw6: string; base4: string; base6: string } {
  const a = parseInt(lab.id.slice(-6, -4), 16), b = (parseInt(lab.id.slice(-4, -2), 16) + n) % 256;
  const x = 100 + (a % 100);
  const base4 = `10.${x}.${b}`;
  const base6 = `fd${(a % 256).toString(16).padStart(2, '0')}:${b.toString(16)}:${n.toString(16)}`;
  return { v4: `${base4}.0/24`, v6: `${base6}::/64`, gw4: `${base4}.1`, gw6: `${base6}::1`, base4, base6 };
}

export interface NetOptions {
  name: string;
  n: number;
  version?: string;
  dual?: boolean;
  extra?: Record<string, unknown>;
  ranges?: unknown;
  portMappings?: unknown[];
}

export function bridgeConf(lab: Lab, o: NetOptions): Record<string, any> {
  const s = subnets(lab, o.n);
  const ranges = o.ranges ?? [[{ subnet: s.v4 }], ...(o.dual ? [[{ subnet: s.v6 }]] : [])];
  const conf: Record<string, any> = {
    cniVersion: o.version ?? '1.0.0',
    name: o.name,
    type: 'meshwork-cni',
    driver: 'bridge',
    bridge: lab.link(`b${o.n}`),
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: true,
    stateDir: path.join(lab.tmp, 'state'),
    store: `file:${path.join(lab.tmp, 'store')}`,
    ipam: { type: 'meshwork', dataDir: path.join(lab.tmp, 'ipam'), ranges },
    ...o.extra,
  };
  if (o.portMappings) conf.runtimeConfig = { portMappings: o.portMappings };
  return conf;
}

/** Everything a plugin call can leave: host links/addresses/nft, records and allocations. */
export function snapshot(lab: Lab, host: Netns, pods: Netns[] = []): string {
  const links = host.ip('-o', 'link', 'show').split('\n').map((l) => l.replace(/^\d+: /, '').split(/[:@]/)[0]).filter(Boolean).sort();
  // Link-local addresses are the kernel's (and appear a moment after a link comes up): not compared.
  const addrs = host.ip('-o', 'addr', 'show').split('\n').map((l) => l.split(/\s+/).slice(1, 4).join(' ')).filter((a) => a && !/ fe80:/.test(a)).sort();
  const nft = host.sh('nft', ['list', 'ruleset']).stdout.trim();
  const podLinks = pods.map((p) => p.ip('-o', 'link', 'show').split('\n').map((l) => l.replace(/^\d+: /, '').split(/[:@]/)[0]).filter(Boolean).sort());
  const files: string[] = [];
  const walk = (d: string) => {
    let ents: fs.Dirent[];
    try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of ents) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (!e.name.endsWith('.lock')) files.push(path.relative(lab.tmp, p));
    }
  };
  walk(path.join(lab.tmp, 'state'));
  const allocations: unknown[] = [];
  const ipamRoot = path.join(lab.tmp, 'ipam');
  for (const net of fs.existsSync(ipamRoot) ? fs.readdirSync(ipamRoot) : []) {
    const f = path.join(ipamRoot, net, 'state.json');
    if (fs.existsSync(f)) allocations.push(...JSON.parse(fs.readFileSync(f, "utf8")).allocations);
  }
  return JSON.stringify({ links, addrs, nft, podLinks, files: files.sort(), allocations }, null, 1);
}

/** TCP echo server on `port` in `ns` (a private namespace, so a fixed port is fine). */
export const ECHO_SERVER = (port: number, host = '::') => `
const net = require('net');
const s = net.createServer((c) => c.on('data', (d) => c.end('echo:' + d)));
s.listen({ port: ${port}, host: '${host}', ipv6Only: false }, () => console.log('listening'));`;

/** Connects, sends "hi", prints the reply; exits non-zero on failure or after 3 s. */
export const TCP_CLIENT = `
const net = require('net');
const [host, port] = process.argv.slice(1);
const c = net.connect({ host, port: Number(port) }, () => c.write('hi'));
let out = '';
c.on('data', (d) => (out += d));
c.on('end', () => { console.log(out); process.exit(out === 'echo:hi' ? 0 : 1); });
c.on('error', (e) => { console.error(e.message); process.exit(2); });
setTimeout(() => { console.error('timeout'); process.exit(3); }, 3000).unref();`;

export async function tcp(ns: Netns, host: string, port: number): Promise<boolean> {
  const r = await runIn(ns, process.execPath, ['-e', TCP_CLIENT, host, String(port)]);
  return r.code === 0 && r.stdout.includes('echo:hi');
}

export async function ping(ns: Netns, addr: string): Promise<boolean> {
  const r = await runIn(ns, 'ping', [addr.includes(':') ? '-6' : '-4', '-c1', '-W1', addr]);
  return r.code === 0;
}
