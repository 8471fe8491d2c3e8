/**
 * Store write cost: the embedded file store against etcd (one member with its
 * data on tmpfs, its anchor), same run, same cores. Measures sequential put
 * latency and CAS-increment latency on an empty store and on one holding 1000
 * endpoint records, and prints file/etcd ratios (< 1: the file store is
 * faster). The file store runs twice: on tmpfs like etcd (same storage, so
 * the ratio compares the software) and on the default disk with fsync (what
 * a host really pays).
 * Run: node dist/bench/store-write.js [writes=300]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Store } from '../store/types';
import type { EndpointRecord } from '../store/records';
import { keys } from '../store/keys';
import { openStore } from '../store/open';
import { EtcdCluster } from '../test/helpers/etcd';

const N = Number(process.argv[2] ?? 300);

function endpoint(i: number): EndpointRecord {
  return {
    network: 'pods', containerId: `c${i.toString(16).padStart(12, '0')}`, ifname: 'eth0',
    namespace: 'default', pod: `web-${i}`, node: `node-${i % 10}`, ips: [`10.244.${i >> 8}.${i & 255}`],
    labels: { app: 'web', tier: 'frontend' }, ready: true,
  };
}

async function timeOps(n: number, op: (i: number) => Promise<unknown>): Promise<{ meanMs: number; p99Ms: number }> {
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await op(i);
    lat.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  lat.sort((a, b) => a - b);
  return { meanMs: lat.reduce((a, b) => a + b, 0) / n, p99Ms: lat[Math.floor(n * 0.99)] };
}

async function measure(store: Store, label: string): Promise<Record<string, { meanMs: number; p99Ms: number }>> {
  const out: Record<string, { meanMs: number; p99Ms: number }> = {};
  out.put = await timeOps(N, (i) => store.put(`/bench/${label}/k${i % 20}`, JSON.stringify({ i })));
  out.cas = await timeOps(N, async () => {
    const kv = await store.get(`/bench/${label}/counter`);
    await store.cas(`/bench/${label}/counter`, kv?.modRevision ?? 0, String(Number(kv?.value ?? 0) + 1));
  });
  for (let i = 0; i < 1000; i++) {
    const e = endpoint(i);
    await store.put(keys.endpoint(e.network, e.containerId, e.ifname), JSON.stringify(e));
  }
  out.put1000 = await timeOps(N, (i) => {
    const e = endpoint(5000 + i);
    return store.put(keys.endpoint(e.network, e.containerId, e.ifname), JSON.stringify(e));
  });
  return out;
}

async function main(): Promise<void> {
  const diskDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-bench-store-'));
  const shmDir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'mw-bench-store-'));
  const cluster = await EtcdCluster.start(1);
  try {
    const etcd = await openStore(cluster.spec);
    const e = await measure(etcd, 'etcd');
    await etcd.close();
    console.log(`store writes, ${N} each, ${os.cpus().length} cores; etcd 3.4 one member with data on tmpfs`);
    for (const [label, dir] of [['file on tmpfs', shmDir], [`file on ${os.tmpdir()}, fsync`, diskDir]]) {
      const file = await openStore(`file:${dir}`);
      const f = await measure(file, 'file');
      await file.close();
      console.log(`-- ${label}`);
      for (const k of Object.keys(f)) {
        console.log(`${k.padEnd(8)} file ${f[k].meanMs.toFixed(2)} ms (p99 ${f[k].p99Ms.toFixed(2)})  etcd ${e[k].meanMs.toFixed(2)} ms (p99 ${e[k].p99Ms.toFixed(2)})  ratio file/etcd ${(f[k].meanMs / e[k].meanMs).toFixed(2)}`);
      }
    }
  } finally {
    await cluster.cleanup();
    fs.rmSync(diskDir, { recursive: true, force: true });
    fs.rmSync(shmDir, { recursive: true, force: true });
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
