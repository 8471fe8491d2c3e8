/**
 * Service VIP benchmark, in throwaway namespaces (root):
 *  1. datapath: TCP connections per second from a client pod to a VIP with two
 *     endpoints, against the anchor, the same connections straight to an
 *     endpoint's address; rounds alternate in one run; prints the ratio.
 *  2. control plane: time of a full sync with many services (render + one nft
 *     transaction) and of the sync that follows one endpoint change.
 *
 *   node dist/bench/vips.js [--conns 1000] [--rounds 3] [--services 1000] [--endpoints 10]
 */
import { performance } from 'node:perf_hooks';
import { Lab } from '../test/helpers/lab';
import { HostTopology, TCP_PORT } from '../test/vips/topology';
import { createMemoryStore } from '../store/memory';
import { keys } from '../store/keys';
import { createServiceVips } from '../agent/service-vips-controller';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};

const svcDoc = (name: string, ip: string) => JSON.stringify({
  kind: 'Service', metadata: { name, namespace: 'bench', labels: {} },
  spec: { type: 'ClusterIP', selector: { app: name }, ports: [{ port: 80, protocol: 'TCP', targetPort: TCP_PORT }], clusterIP: ip },
});
const epDoc = (id: string, ip: string, app: string) => JSON.stringify({
  network: 'bench', containerId: id, ifname: 'eth0', namespace: 'bench', pod: id, node: 'n1', ips: [ip], labels: { app }, ready: true,
});

async function datapath(lab: Lab, conns: number, rounds: number): Promise<void> {
  const topo = new HostTopology(lab);
  topo.setBridgeNetfilter(false);
  const client = topo.addPod('cl', false);
  const a = topo.addPod('pa', true);
  const b = topo.addPod('pb', true);
  await topo.waitServing(client, [a, b]);
  const store = createMemoryStore();
  await store.put(keys.policy('Service', 'bench', 'web'), svcDoc('web', '10.96.50.10'));
  for (const p of [a, b]) await store.put(keys.endpoint('bench', p.name, 'eth0'), epDoc(p.name, p.ip, 'web'));
  const vips = createServiceVips({ store, netnsPath: topo.host.path });
  await vips.start();
  try {
    const rate = async (host: string) => {
      const t0 = performance.now();
      const tally = await topo.probe(client, 'tcp', host, host === a.ip ? TCP_PORT : 80, conns);
      const ok = (tally.pa ?? 0) + (tally.pb ?? 0);
      if (ok !== conns) throw new Error(`only ${ok}/${conns} connections answered: ${JSON.stringify(tally)}`);
      return conns / ((performance.now() - t0) / 1000);
    };
    const direct: number[] = [], viaVip: number[] = [];
    for (let r = 0; r < rounds; r++) {
      direct.push(await rate(a.ip));
      viaVip.push(await rate('10.96.50.10'));
    }
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    console.log(`datapath: direct ${med(direct).toFixed(0)} conn/s, via VIP ${med(viaVip).toFixed(0)} conn/s (median of ${rounds} rounds of ${conns})`);
    console.log(`datapath ratio VIP/direct: ${(med(viaVip) / med(direct)).toFixed(2)}`);
  } finally {
    await vips.stop();
    await store.close();
  }
}

async function controlPlane(lab: Lab, services: number, perService: number): Promise<void> {
  const host = lab.netns('cp');
  const store = createMemoryStore();
  for (let s = 0; s < services; s++) {
    await store.put(keys.policy('Service', 'bench', `s${s}`), svcDoc(`s${s}`, `10.97.${s >> 8}.${s & 255}`));
    for (let e = 0; e < perService; e++) {
      const n = s * perService + e;
      await store.put(keys.endpoint('bench', `s${s}e${e}`, 'eth0'), epDoc(`s${s}e${e}`, `10.${100 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`, `s${s}`));
    }
  }
  const vips = createServiceVips({ store, netnsPath: host.path, resyncIntervalMs: 0 });
  try {
    let t0 = performance.now();
    await vips.start();
    const full = performance.now() - t0;
    await store.put(keys.endpoint('bench', 's0e0', 'eth0'), JSON.stringify({ ...JSON.parse(epDoc('s0e0', '10.100.0.0', 's0')), ready: false }));
    t0 = performance.now();
    await vips.reconcileNow();
    const change = performance.now() - t0;
    t0 = performance.now();
    await vips.reconcileNow();
    const noop = performance.now() - t0;
    console.log(`control plane: ${services} services x ${perService} endpoints: first sync ${full.toFixed(0)} ms, one endpoint change ${change.toFixed(0)} ms, unchanged pass ${noop.toFixed(1)} ms`);
  } finally {
    await vips.stop();
    await store.close();
  }
}

async function main(): Promise<void> {
  const lab = new Lab('mwvb');
  try {
    await datapath(lab, arg('conns', 1000), arg('rounds', 3));
    await controlPlane(lab, arg('services', 1000), arg('endpoints', 10));
  } finally {
    await lab.cleanup();
  }
}

main().catch((err) => { console.error(`bench failed: ${(err as Error).message}`); process.exitCode = 1; });
