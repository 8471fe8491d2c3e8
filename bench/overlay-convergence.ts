/**
 * Overlay convergence, two measurements in one run:
 *  1. join: time from a new host's agent start to the first successful TCP
 *     connect from a pod on an existing host to a pod on the new host (goal
 *     < 1 s), split into agent registration, pod wiring and datapath ready;
 *     done with an empty cluster and again with 100 simulated nodes registered.
 *  2. scale: 100 simulated nodes registered in one burst; time until an
 *     existing agent has programmed all of them, and its reconcile durations.
 *   node dist/bench/overlay-convergence.js
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, eventually } from '../test/helpers/lab';
import { NETWORK, Overlay, type Host, type Pod } from '../test/overlay/topology';
import { openStore } from '../store/open';
import { keys } from '../store/keys';
import type { NodeRecord } from '../store/records';

/** Runs in the existing pod: reads a target IP on stdin, connects every 2 ms, prints the time of the first success. */
const PROBER = `let ip; process.stdin.once('data', (d) => { ip = String(d).trim(); tryOnce(); });
function tryOnce() { const s = require('net').connect(7070, ip); s.on('connect', () => { console.log(Date.now()); process.exit(0); });
  s.on('error', () => { s.destroy(); setTimeout(tryOnce, 2); }); }`;

const sim = (i: number, subnet: string): NodeRecord => ({
  name: `sim${i}`, underlay: `192.168.200.${i}`, vtepMac: `02:aa:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
  podSubnets: { [NETWORK]: [subnet] },
});

async function join(o: Overlay, lab: Lab, from: Pod): Promise<{ total: number; registered: number; wired: number; host: Host }> {
  const prober = lab.spawnIn(from.ns, process.execPath, ['-e', PROBER], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  prober.stdout!.on('data', (d) => (out += d));
  const h = o.addHost();
  const t0 = Date.now();
  await o.startAgent(h);
  const registered = Date.now();
  const pod = await o.addPod(h);
  const wired = Date.now();
  prober.stdin!.write(`${pod.ip}\n`);
  await eventually(() => out.trim() !== '', 10_000, 'first connect');
  return { total: Number(out.trim()) - t0, registered: registered - t0, wired: wired - t0, host: h };
}

async function reconcileStats(h: Host): Promise<string> {
  const port = /"metrics listening".*"port":(\d+)/.exec(h.log)?.[1];
  const r = await h.ns.run('curl', ['-s', `http://127.0.0.1:${port}/metrics`]);
  const v = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
  const count = v('meshwork_agent_reconciles_total');
  const sum = v('meshwork_agent_reconcile_duration_seconds_sum');
  return `${count} passes, mean ${((sum / count) * 1000).toFixed(1)} ms`;
}

async function main(): Promise<void> {
  const lab = new Lab('mwb');
  try {
    const storeSpec = `file:${lab.tmp}/store`;
    const o = new Overlay(lab, storeSpec, { leaseTtl: 10 });
    const h1 = o.addHost();
    const h2 = o.addHost();
    await Promise.all([o.startAgent(h1), o.startAgent(h2)]);
    const p1 = await o.addPod(h1);
    await o.expectReach(p1, await o.addPod(h2));

    const a = await join(o, lab, p1);
    console.log(`join, 3 nodes: first pod-to-pod connect ${a.total} ms after agent start (agent registered ${a.registered} ms, pod wired ${a.wired} ms) goal < 1000 ms, ratio to goal ${(a.total / 1000).toFixed(2)}`);

    // 100 simulated nodes in one burst, under one lease, as 100 agents would appear.
    const store = await openStore(storeSpec);
    const lease = await store.grantLease(60);
    // Subnets the real hosts do not hold (a real agent would have leased them).
    const used = new Set(o.hosts.map((h) => o.subnetOf(h)));
    const free = Array.from({ length: 256 }, (_, i) => `10.96.${i}.0/24`).filter((s) => !used.has(s));
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 100 }, (_, i) => store.put(keys.node(`sim${i + 1}`), JSON.stringify(sim(i + 1, free[i])), { lease: lease.id })));
    const written = Date.now() - t0;
    await eventually(() => h1.ns.ip('route', 'show', 'dev', 'mw.vx1').trim().split('\n').length >= 102, 30_000, '102 peer routes on h1');
    const programmed = Date.now() - t0;
    console.log(`scale: 100 nodes registered in ${written} ms; h1 programmed all 102 peers ${programmed} ms after the burst began; h1 reconciles: ${await reconcileStats(h1)}`);

    const b = await join(o, lab, p1);
    const routes = b.host.ns.ip('route', 'show', 'dev', 'mw.vx1').trim().split('\n').length;
    console.log(`join, 104 nodes: first pod-to-pod connect ${b.total} ms after agent start (agent registered ${b.registered} ms, pod wired ${b.wired} ms; new host programmed ${routes} peers) ratio to goal ${(b.total / 1000).toFixed(2)}`);
    console.log(`new host reconciles: ${await reconcileStats(b.host)}`);
    await lease.revoke();
    await store.close();
    fs.rmSync(path.join(lab.tmp, 'store'), { recursive: true, force: true });
  } finally {
    await lab.cleanup();
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1; });
