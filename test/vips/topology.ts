/**
 * One host on one machine for the VIP tests: a "host" namespace holding a
 * bridge with a gateway address, and pod namespaces on it through veths, each
 * with a default route via the bridge. Pods run a tiny TCP+UDP server that
 * answers with its own name, so a client sees which endpoint it reached.
 * Everything lives in the Lab, so `lab.cleanup()` removes it all.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { eventually, type Lab, type Netns } from '../helpers/lab';

export const SUBNET = '10.244.7';
export const GATEWAY = `${SUBNET}.1`;
export const SUBNET6 = 'fd00:244:7::';
export const GATEWAY6 = `${SUBNET6}1`;
/** Ports inside private pod namespaces only. */
export const TCP_PORT = 8080;
export const UDP_PORT = 5353;

const SERVER = `
const [name, tcp, udp] = process.argv.slice(2);
const peer = (a) => a.replace(/^::ffff:/, '');
require('net').createServer((s) => { s.on('error', () => {}); s.end(name + ' ' + peer(s.remoteAddress)); }).listen(+tcp, '::');
for (const [type, addr] of [['udp4', '0.0.0.0'], ['udp6', '::']]) {
  const u = require('dgram').createSocket({ type, ipv6Only: type === 'udp6' });
  u.on('message', (m, r) => u.send(name + ' ' + r.address, r.port, r.address));
  u.bind(+udp, addr);
}
`;

/**
 * Makes n TCP connections (or UDP exchanges, each from a fresh socket) one
 * after another and prints a JSON tally: {"<server name>": count, "error:<code>": count}.
 */
const CLIENT = `
const [mode, host, port, n] = process.argv.slice(2);
// "udp@40000": every exchange from that one source port, i.e. one conntrack flow.
const [proto, srcPort] = mode.split('@');
const tally = {};
const add = (k) => (tally[k] = (tally[k] || 0) + 1);
function tcpOnce() {
  return new Promise((resolve) => {
    const s = require('net').connect(+port, host);
    let d = '';
    s.setTimeout(3000, () => { s.destroy(); resolve('error:timeout'); });
    s.on('data', (c) => (d += c));
    s.on('end', () => resolve(d.split(' ')[0]));
    s.on('error', (e) => resolve('error:' + e.code));
  });
}
function udpOnce() {
  return new Promise((resolve) => {
    const s = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (v) => { clearTimeout(t); s.close(); resolve(v); };
    const t = setTimeout(() => done('error:timeout'), 3000);
    s.on('message', (m) => done(String(m).split(' ')[0]));
    s.on('error', (e) => done('error:' + e.code));
    const go = () => s.connect(+port, host, () => s.send('q'));
    if (srcPort) s.bind(+srcPort, go); else go();
  });
}
(async () => {
  for (let i = 0; i < +n; i++) add(await (proto === 'udp' ? udpOnce() : tcpOnce()));
  console.log(JSON.stringify(tally));
})();
`;

export interface Pod { name: string; ns: Netns; ip: string; ip6: string }

export class HostTopology {
  readonly host: Netns;
  readonly pods: Pod[] = [];
  private readonly serverJs: string;
  private readonly clientJs: string;
  private hairpin = false;

  constructor(readonly lab: Lab) {
    this.serverJs = path.join(lab.tmp, 'server.js');
    this.clientJs = path.join(lab.tmp, 'client.js');
    fs.writeFileSync(this.serverJs, SERVER);
    fs.writeFileSync(this.clientJs, CLIENT);
    this.host = lab.netns('host');
    this.host.ip('link', 'add', 'br0', 'type', 'bridge');
    this.host.ip('addr', 'add', `${GATEWAY}/24`, 'dev', 'br0');
    this.host.ip('addr', 'add', `${GATEWAY6}/64`, 'dev', 'br0', 'nodad');
    this.host.ip('link', 'set', 'br0', 'up');
    this.host.sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    // A real host has a default route; its own sockets need some route to a VIP before nat output runs.
    this.host.ip('route', 'add', 'default', 'dev', 'br0');
    this.host.ip('-6', 'route', 'add', 'default', 'dev', 'br0');
    // The kernel rate-limits ICMP per peer (burst 6, then one a second); a test
    // sending several UDP datagrams to a VIP without endpoints wants every
    // port-unreachable, so this host namespace lifts the limit.
    this.host.sh('sysctl', ['-qw', 'net.ipv4.icmp_ratelimit=0', 'net.ipv6.icmp.ratelimit=0']);
  }

  /**
   * Whether bridged traffic passes through netfilter in the host namespace
   * (br_netfilter). When it does, a DNAT back to the sender's own port is
   * bridged, not routed, and needs hairpin on that port (as kubelet and the
   * bridge plugin's hairpinMode set it); pods added after this get it.
   */
  setBridgeNetfilter(on: boolean): boolean {
    this.hairpin = on;
    const r = this.host.sh('sysctl', ['-qw', `net.bridge.bridge-nf-call-iptables=${on ? 1 : 0}`, `net.bridge.bridge-nf-call-ip6tables=${on ? 1 : 0}`], { allowFail: true });
    return r.code === 0;
  }

  addPod(name: string, serve: boolean): Pod {
    const ip = `${SUBNET}.${10 + this.pods.length}`;
    const ip6 = `${SUBNET6}${(10 + this.pods.length).toString(16)}`;
    const ns = this.lab.netns(name);
    const hostSide = `v${name}`;
    this.lab.veth(ns, 'eth0', `${ip}/24`, this.host, hostSide, undefined);
    this.host.ip('link', 'set', hostSide, 'master', 'br0');
    if (this.hairpin) this.host.ip('link', 'set', hostSide, 'type', 'bridge_slave', 'hairpin', 'on');
    ns.ip('addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad');
    ns.ip('route', 'add', 'default', 'via', GATEWAY);
    ns.ip('-6', 'route', 'add', 'default', 'via', GATEWAY6);
    const pod = { name, ns, ip, ip6 };
    if (serve) this.lab.spawnIn(ns, process.execPath, [this.serverJs, name, String(TCP_PORT), String(UDP_PORT)]);
    this.pods.push(pod);
    return pod;
  }

  /** Runs the client inside `from` and returns its tally. */
  /** `udp@<port>` sends every datagram from that source port (one flow). */
  async probe(from: Pod | Netns, proto: 'tcp' | 'udp' | `udp@${number}`, host: string, port: number, n: number): Promise<Record<string, number>> {
    const ns = 'ns' in from ? from.ns : from;
    const r = await ns.run(process.execPath, [this.clientJs, proto, host, String(port), String(n)], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`client in ${ns.name} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, number>;
  }

  /** Waits until each server answers directly (no VIP involved) over TCP and UDP. */
  async waitServing(from: Pod, servers: Pod[]): Promise<void> {
    for (const p of servers) {
      await eventually(async () => (await this.probe(from, 'tcp', p.ip, TCP_PORT, 1))[p.name] === 1, 10_000, `${p.name} serving TCP`);
      await eventually(async () => (await this.probe(from, 'udp', p.ip, UDP_PORT, 1))[p.name] === 1, 10_000, `${p.name} serving UDP`);
      await eventually(async () => (await this.probe(from, 'tcp', p.ip6, TCP_PORT, 1))[p.name] === 1, 10_000, `${p.name} serving TCP over IPv6`);
    }
  }

  /** `nft list tables` inside the host namespace. */
  tables(): string {
    return this.host.sh('nft', ['list', 'tables']).stdout;
  }
}
