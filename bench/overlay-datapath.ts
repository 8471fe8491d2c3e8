/**
 * Overlay datapath: TCP throughput pod to pod across hosts (bridge -> VXLAN
 * -> underlay -> VXLAN -> bridge) against pod to pod on one host's bridge,
 * same run, same cores, iperf3 from Debian. The datapath is the kernel's; a
 * ratio well under 1 points at MTU or offload settings. A third path is the
 * kernel's reference for the same design: two hosts wired by hand with `ip`
 * and `bridge` exactly as flannel's VXLAN backend wires them (bridge, VXLAN
 * with nolearning, onlink route, permanent neighbour, FDB entry, and the
 * masquerade of its default --ip-masq), on the same kind of underlay. meshwork/reference near 1 means meshwork adds nothing to
 * the kernel's cost; the bridge ratio then is what VXLAN costs on this machine.
 *   node dist/bench/overlay-datapath.js [seconds=5] [rounds=2]
 */
import { Lab, eventually, sh, type Netns } from '../test/helpers/lab';
import { Overlay } from '../test/overlay/topology';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 2);

async function iperf(o: Overlay, from: { ns: Netns }, to: { ip: string }): Promise<number> {
  const r = await from.ns.run('iperf3', ['-c', to.ip, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
  if (r.code !== 0) throw new Error(`iperf3 failed: ${r.stdout.slice(0, 300)}${r.stderr}`);
  return JSON.parse(r.stdout).end.sum_received.bits_per_second as number;
}

/** Two hosts and two pods wired by hand, flannel-style; returns the client pod and the remote pod's address. */
function handBuilt(lab: Lab): { client: { ns: Netns }; remote: { ip: string; ns: Netns } } {
  const u = lab.netns('ru');
  u.ip('link', 'add', 'br0', 'type', 'bridge');
  u.ip('link', 'set', 'br0', 'up');
  const hosts = [1, 2].map((i) => {
    const h = lab.netns(`rh${i}`);
    lab.veth(h, 'eth0', `192.168.91.${i}/24`, u, `rh${i}`, undefined);
    u.ip('link', 'set', `rh${i}`, 'master', 'br0');
    h.sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    h.ip('link', 'add', 'br0', 'type', 'bridge');
    h.ip('addr', 'add', `10.97.${i}.1/24`, 'dev', 'br0');
    h.ip('link', 'set', 'br0', 'mtu', '1450', 'up');
    h.ip('link', 'add', 'vx', 'type', 'vxlan', 'id', '1', 'local', `192.168.91.${i}`, 'dev', 'eth0', 'dstport', '8472', 'nolearning');
    h.ip('link', 'set', 'vx', 'address', `02:00:00:00:00:0${i}`, 'mtu', '1450', 'up');
    h.ip('addr', 'add', `10.97.${i}.0/32`, 'dev', 'vx');
    // flannel's default --ip-masq: traffic leaving the cluster CIDR is masqueraded,
    // which turns on connection tracking for every packet, as meshwork's egress table does.
    h.sh('nft', ['-f', '-'], { input: `table ip flannel-masq {\n  chain post {\n    type nat hook postrouting priority srcnat;\n    ip saddr 10.97.${i}.0/24 ip daddr != 10.97.0.0/16 ip daddr != 224.0.0.0/4 masquerade\n  }\n}\n` });
    return h;
  });
  for (const [a, b] of [[1, 2], [2, 1]]) {
    const h = hosts[a - 1];
    h.ip('route', 'add', `10.97.${b}.0/24`, 'via', `10.97.${b}.0`, 'dev', 'vx', 'onlink');
    h.ip('neigh', 'add', `10.97.${b}.0`, 'lladdr', `02:00:00:00:00:0${b}`, 'dev', 'vx', 'nud', 'permanent');
    h.sh('bridge', ['fdb', 'append', `02:00:00:00:00:0${b}`, 'dev', 'vx', 'dst', `192.168.91.${b}`]);
  }
  const pod = (host: number, n: number) => {
    const ns = lab.netns(`rp${host}${n}`);
    lab.veth(ns, 'eth0', `10.97.${host}.${10 + n}/24`, hosts[host - 1], `rp${host}${n}`, undefined);
    hosts[host - 1].ip('link', 'set', `rp${host}${n}`, 'master', 'br0', 'mtu', '1450', 'up');
    ns.ip('link', 'set', 'eth0', 'mtu', '1450');
    ns.ip('route', 'add', 'default', 'via', `10.97.${host}.1`);
    return { ns, ip: `10.97.${host}.${10 + n}` };
  };
  return { client: pod(1, 1), remote: pod(2, 1) };
}

async function main(): Promise<void> {
  sh('iperf3', ['--version']);
  const lab = new Lab('mwb');
  try {
    const o = new Overlay(lab, `file:${lab.tmp}/store`, { leaseTtl: 10 });
    const h1 = o.addHost();
    const h2 = o.addHost();
    await Promise.all([o.startAgent(h1), o.startAgent(h2)]);
    const client = await o.addPod(h1);
    const local = await o.addPod(h1);
    const remote = await o.addPod(h2);
    const ref = handBuilt(lab);
    for (const p of [local, remote, ref.remote]) lab.spawnIn(p.ns, 'iperf3', ['-s']);
    await o.expectReach(client, remote);
    await eventually(async () => (await client.ns.run('iperf3', ['-c', local.ip, '-n', '100K'])).code === 0, 10_000, 'iperf3 servers');
    await eventually(async () => (await client.ns.run('iperf3', ['-c', remote.ip, '-n', '100K'])).code === 0, 10_000, 'iperf3 servers');
    await eventually(async () => (await ref.client.ns.run('iperf3', ['-c', ref.remote.ip, '-n', '100K'])).code === 0, 10_000, 'reference iperf3 server');
    const mtu = h1.ns.ip('link', 'show', 'mw.vx1').match(/mtu (\d+)/)?.[1];
    const sameHost: number[] = [];
    const crossHost: number[] = [];
    const reference: number[] = [];
    for (let i = 0; i < rounds; i++) {
      sameHost.push(await iperf(o, client, local));
      crossHost.push(await iperf(o, client, remote));
      reference.push(await iperf(o, ref.client, ref.remote));
    }
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const g = (bps: number) => `${(bps / 1e9).toFixed(2)} Gbit/s`;
    console.log(`overlay MTU ${mtu}, ${rounds} x ${seconds}s per path, alternating`);
    console.log(`same-host bridge (anchor): ${g(avg(sameHost))}  [${sameHost.map(g).join(', ')}]`);
    console.log(`cross-host VXLAN overlay:  ${g(avg(crossHost))}  [${crossHost.map(g).join(', ')}]`);
    console.log(`hand-built flannel-style:  ${g(avg(reference))}  [${reference.map(g).join(', ')}]`);
    console.log(`ratio overlay/bridge: ${(avg(crossHost) / avg(sameHost)).toFixed(3)} (goal >= 0.9)`);
    console.log(`ratio hand-built/bridge: ${(avg(reference) / avg(sameHost)).toFixed(3)} (the kernel's cost of VXLAN here)`);
    console.log(`ratio overlay/hand-built: ${(avg(crossHost) / avg(reference)).toFixed(3)} (meshwork's own cost; 1.0 = none)`);
  } finally {
    await lab.cleanup();
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1; });
