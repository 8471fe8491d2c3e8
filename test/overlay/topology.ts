/**
 * A multi-host overlay on one machine for tests and benches: an underlay
 * namespace holding a bridge, each "host" a namespace with a veth to it and
 * an underlay address, running its own `meshwork agent` (in its namespace,
 * as a real host would) and wiring pods (namespaces) with `meshwork-cni`.
 * Everything lives in the Lab, so `lab.cleanup()` removes it all.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { inNetnsSync } from '../../lib/netns';
import { eventually, repoRoot, type Lab, type Netns } from '../helpers/lab';

export const NETWORK = 'mesh';
export const CLUSTER_CIDR = '10.96.0.0/16';
export const VXLAN = 'mw.vx1';
const POD_PORT = 7070; // inside private pod namespaces only

/** Answers each connection with "<its own address> <the peer's address>", so a test sees NAT if there were any. */
const SERVER = `const net = require('net'); const h = (s) => s.end(s.localAddress + ' ' + s.remoteAddress);
net.createServer(h).listen(${POD_PORT}, '0.0.0.0'); net.createServer(h).listen({ port: ${POD_PORT}, host: '::', ipv6Only: true }).on('error', () => {});`;
const CLIENT = `const s = require('net').connect(${POD_PORT}, process.argv[1]); let d = ''; s.setTimeout(2000, () => { s.destroy(); process.exit(2); });
s.on('data', (c) => (d += c)); s.on('end', () => { console.log(d); process.exit(0); }); s.on('error', () => process.exit(1));`;

export interface Host {
  name: string;
  ns: Netns;
  underlay: string;
  stateDir: string;
  agent?: ChildProcess;
  log: string;
}

export interface Pod { name: string; ns: Netns; host: Host; ip: string; ip6?: string; containerId: string }

export class Overlay {
  readonly underlay: Netns;
  readonly hosts: Host[] = [];
  readonly pods: Pod[] = [];
  private readonly proxies: net.Server[] = [];

  constructor(readonly lab: Lab, readonly store: string, readonly opts: { leaseTtl?: number; etcdPorts?: number[]; agentArgs?: string[]; clusterCidr?: string } = {}) {
    this.underlay = lab.netns('u');
    this.underlay.ip('link', 'add', 'br0', 'type', 'bridge');
    this.underlay.ip('link', 'set', 'br0', 'up');
    lab.onCleanup(() => { for (const p of this.proxies) p.close(); });
  }

  addHost(): Host {
    const i = this.hosts.length + 1;
    const ns = this.lab.netns(`h${i}`);
    const underlay = `192.168.90.${i}`;
    this.lab.veth(ns, 'eth0', `${underlay}/24`, this.underlay, `h${i}`, undefined);
    this.underlay.ip('link', 'set', `h${i}`, 'master', 'br0');
    const stateDir = path.join(this.lab.tmp, `h${i}`);
    fs.mkdirSync(stateDir, { recursive: true });
    const h: Host = { name: `h${i}`, ns, underlay, stateDir, log: '' };
    for (const port of this.opts.etcdPorts ?? []) this.forwardLoopback(ns, port);
    this.hosts.push(h);
    return h;
  }

  /**
   * etcd listens on the machine's loopback; a host namespace has its own. The
   * test process opens a listener on the host's loopback (same port) and
   * relays each connection to the real member: a stopped member stays
   * unreachable, as it would across hosts.
   */
  private forwardLoopback(ns: Netns, port: number): void {
    const srv = net.createServer((c) => {
      const up = net.connect(port, '127.0.0.1');
      c.pipe(up).pipe(c);
      const end = () => { c.destroy(); up.destroy(); };
      c.on('error', end); up.on('error', end); c.on('close', end); up.on('close', end);
    });
    // Without a host, listen() binds synchronously (no address lookup), so
    // the socket is made while the thread is inside the host's namespace.
    inNetnsSync(ns.path, () => srv.listen(port));
    this.proxies.push(srv);
  }

  agentArgs(h: Host): string[] {
    return [
      path.join(repoRoot, 'bin', 'meshwork'), 'agent', '--node', h.name, '--underlay', h.underlay, '--store', this.store,
      '--network', NETWORK, '--cluster-cidr', this.opts.clusterCidr ?? CLUSTER_CIDR, '--state-dir', h.stateDir,
      '--lease-ttl', String(this.opts.leaseTtl ?? 2), '--resync', '3600', '--metrics', '127.0.0.1:0',
      // The agent hosts the resident CNI daemon; the plugin shim on this host talks to it.
      '--cni-socket', path.join(h.stateDir, 'cni.sock'), ...(this.opts.agentArgs ?? []),
    ];
  }

  /** Starts the host's agent and waits until it has registered (its log says so). */
  async startAgent(h: Host): Promise<void> {
    const child = this.lab.spawnIn(h.ns, process.execPath, this.agentArgs(h), { env: { ...process.env, MESHWORK_DEBUG: '1' } });
    h.agent = child;
    h.log = '';
    child.stderr!.on('data', (d) => (h.log += d));
    child.stdout!.on('data', (d) => (h.log += d));
    await eventually(() => {
      if (child.exitCode !== null) throw new Error(`agent ${h.name} exited ${child.exitCode}: ${h.log}`);
      return h.log.includes('"agent started"');
    }, 20_000, `agent ${h.name} to start`);
  }

  /** Stops the agent with `signal` and waits for the process to end. */
  async stopAgent(h: Host, signal: NodeJS.Signals): Promise<void> {
    const c = h.agent;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
  }

  cniConf(h: Host): string {
    return JSON.stringify({
      cniVersion: '1.0.0', name: NETWORK, type: 'meshwork-cni', driver: 'overlay',
      nodeStateDir: h.stateDir, stateDir: path.join(h.stateDir, 'cni'),
      // Endpoint records go to the cluster's store under this host's name (hosts share one machine's host name).
      store: this.store, node: h.name,
      ipam: { type: 'meshwork', dataDir: path.join(h.stateDir, 'ipam') },
    });
  }

  async cni(h: Host, command: 'ADD' | 'DEL' | 'CHECK', p: { ns: Netns; containerId: string }, conf = this.cniConf(h)): Promise<string> {
    // bin/meshwork-cni is what a runtime executes: the shim forwards to this host's daemon (or runs the plugin itself).
    const r = await h.ns.run('env', [
      `CNI_COMMAND=${command}`, `CNI_CONTAINERID=${p.containerId}`, `CNI_NETNS=${p.ns.path}`, 'CNI_IFNAME=eth0', 'CNI_PATH=/nonexistent',
      `MESHWORK_CNI_SOCKET=${path.join(h.stateDir, 'cni.sock')}`, path.join(repoRoot, 'bin', 'meshwork-cni'),
    ], { input: conf });
    if (r.code !== 0) throw new Error(`meshwork-cni ${command} on ${h.name} exited ${r.code}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /** A pod on `h`, wired by the plugin, running a tiny TCP server. */
  async addPod(h: Host): Promise<Pod> {
    const name = `p${this.pods.length + 1}`;
    const ns = this.lab.netns(name);
    const containerId = `${this.lab.id}-${name}`;
    const out = JSON.parse(await this.cni(h, 'ADD', { ns, containerId }));
    const addrs = (out.ips as Array<{ address: string }>).map((i) => i.address.split('/')[0]);
    const ip = addrs.find((a) => !a.includes(':'))!;
    const ip6 = addrs.find((a) => a.includes(':'));
    this.lab.spawnIn(ns, process.execPath, ['-e', SERVER]);
    const pod = { name, ns, host: h, ip, ip6, containerId };
    this.pods.push(pod);
    return pod;
  }

  /**
   * A server outside the cluster: an address on the underlay switch itself, which
   * (like any network beyond the nodes) has no route to pod subnets.
   */
  externalServer(address = '192.168.90.254'): Pod {
    this.underlay.ip('addr', 'add', `${address}/24`, 'dev', 'br0');
    this.lab.spawnIn(this.underlay, process.execPath, ['-e', SERVER]);
    return { name: 'external', ns: this.underlay, host: { name: 'underlay' } as Host, ip: address, containerId: '' };
  }

  /** One TCP exchange from `a` to `b`; returns "<b's address> <a's address as b saw it>" or undefined. */
  async tcp(a: Pod, b: Pod, family: 4 | 6 = 4): Promise<string | undefined> {
    const r = await a.ns.run(process.execPath, ['-e', CLIENT, family === 4 ? b.ip : b.ip6!], { timeoutMs: 5000 });
    return r.code === 0 ? r.stdout.trim() : undefined;
  }

  /** Waits until `a` reaches `b` by pod IP and `b` sees `a`'s own pod IP (no NAT). */
  async expectReach(a: Pod, b: Pod, timeoutMs = 15_000, family: 4 | 6 = 4): Promise<void> {
    const want = family === 4 ? `${b.ip} ${a.ip}` : `${b.ip6} ${a.ip6}`;
    let last: string | undefined;
    try {
      await eventually(async () => (last = await this.tcp(a, b, family)) === want, timeoutMs, `${a.name}@${a.host.name} -> ${b.name}@${b.host.name} by IPv${family} pod IP without NAT`);
    } catch (err) {
      // Say what the last attempt saw and what the sender's host had programmed.
      throw new Error(`${(err as Error).message} (last answer: ${JSON.stringify(last)}; ${a.host.name} routes: ${this.routes(a.host).trim().replace(/\n/g, '; ')})`);
    }
  }

  /** The host's overlay state as text: VTEP link identity, routes, neighbours, FDB. */
  dump(h: Host): string {
    const link = h.ns.ip('-o', '-d', 'link', 'show', VXLAN);
    return [
      link,
      h.ns.ip('route', 'show', 'dev', VXLAN),
      h.ns.ip('neigh', 'show', 'dev', VXLAN, 'nud', 'permanent'),
      h.ns.sh('bridge', ['fdb', 'show', 'dev', VXLAN]).stdout,
      h.ns.ip('-o', 'addr', 'show', 'scope', 'global'),
    ].join('\n---\n');
  }

  routes(h: Host): string { return h.ns.ip('route', 'show', 'dev', VXLAN); }

  subnetOf(h: Host): string {
    const st = JSON.parse(fs.readFileSync(path.join(h.stateDir, 'overlay', `${NETWORK}.json`), 'utf8'));
    return st.subnets[0];
  }
}
