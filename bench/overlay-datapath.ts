/**
 * Overlay datapath: TCP throughput pod to pod across hosts (bridge -> VXLAN
 * -> underlay -> VXLAN -> bridge) against pod to pod on one host's bridge,
 * same run, same cores, iperf3 from Debian. The datapath is the kernel's; a
 * ratio well under 1 points at MTU or offload settings.
 *   node dist/bench/overlay-datapath.js [seconds=5] [rounds=2]
 */
import { Lab, eventually, sh } from '../test/helpers/lab';
import { Overlay } from '../test/overlay/topology';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 2);

async function iperf(o: Overlay, from: { ns: import('../test/helpers/lab').Netns }, to: { ip: string }): Promise<number> {
  const r = await from.ns.run('iperf3', ['-c', to.ip, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
  if (r.code !== 0) throw new Error(`iperf3 failed: ${r.stdout.slice(0, 300)}${r.stderr}`);
  return JSON.parse(r.stdout).end.sum_received.bits_per_second as number;
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
    for (const p of [local, remote]) lab.spawnIn(p.ns, 'iperf3', ['-s']);
    await o.expectReach(client, remote);
    await eventually(async () => (await client.ns.run('iperf3', ['-c', local.ip, '-n', '100K'])).code === 0, 10_000, 'iperf3 servers');
    await eventually(async () => (await client.ns.run('iperf3', ['-c', remote.ip, '-n', '100K'])).code === 0, 10_000, 'iperf3 servers');
    const mtu = h1.ns.ip('link', 'show', 'mw.vx1').match(/mtu (\d+)/)?.[1];
    const sameHost: number[] = [];
    const crossHost: number[] = [];
    for (let i = 0; i < rounds; i++) {
      sameHost.push(await iperf(o, client, local));
      crossHost.push(await iperf(o, client, remote));
    }
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const g = (bps: number) => `${(bps / 1e9).toFixed(2)} Gbit/s`;
    console.log(`overlay MTU ${mtu}, ${rounds} x ${seconds}s per path, alternating`);
    console.log(`same-host bridge (anchor): ${g(avg(sameHost))}  [${sameHost.map(g).join(', ')}]`);
    console.log(`cross-host VXLAN overlay:  ${g(avg(crossHost))}  [${crossHost.map(g).join(', ')}]`);
    console.log(`ratio overlay/bridge: ${(avg(crossHost) / avg(sameHost)).toFixed(3)} (goal >= 0.9)`);
  } finally {
    await lab.cleanup();
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1; });
