import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { storeContract, type StoreBackend } from './contract';
import { EtcdCluster, freePort, haveEtcd, NEEDS_ETCD } from '../helpers/etcd';
import { eventually } from '../helpers/lab';
import { openStore } from '../../store/open';

function etcdBackend(name: string, size: number, stopOneMidway: boolean): StoreBackend {
  let cluster: EtcdCluster | undefined;
  const c = () => cluster!;
  return {
    name,
    leaseTtl: 2, // etcd raises shorter TTLs to 1.5 x its election timeout
    async setup() { cluster = await EtcdCluster.start(size); },
    async teardown() { await cluster?.cleanup(); },
    async open() {
      return { store: await openStore(c().spec), spec: c().spec };
    },
    async compact(revision) {
      const raw = new Etcd3({ hosts: c().members.filter((m) => m.proc?.exitCode === null && m.proc.signalCode === null).map((m) => m.clientUrl) });
      try { await raw.kv.compact({ revision, physical: true }); } finally { raw.close(); }
    },
    async interrupt(during) {
      if (size === 1) {
        await c().stop(0);
        const writes = during();
        await c().restart(0);
        await writes;
        return;
      }
      // Stop each member in turn so whichever one the client uses goes away once.
      const wasStopped = stopOneMidway ? [2] : [];
      for (const i of wasStopped) await c().restart(i);
      for (let i = 0; i < size; i++) {
        await c().stop(i);
        await during();
        await c().restart(i);
      }
      for (const i of wasStopped) await c().stop(i);
    },
    async midway() {
      if (stopOneMidway) await c().stop(2);
    },
  };
}

if (!haveEtcd) {
  test('etcd contract', { skip: NEEDS_ETCD }, () => undefined);
} else {
  storeContract(etcdBackend('etcd (one member)', 1, false));
  storeContract(etcdBackend('etcd (three members, one stopped midway)', 3, true));
}

test('etcd: with every member down, calls fail fast naming the endpoints, and a lease reports itself lost', { skip: !haveEtcd && NEEDS_ETCD }, async () => {
  const cluster = await EtcdCluster.start(1);
  try {
    const store = await openStore(cluster.spec, { etcd: { callTimeoutMs: 1000 } });
    const lease = await store.grantLease(2);
    await store.put('/mwtest/lost/k', 'v', { lease: lease.id });
    const lost: Error[] = [];
    lease.onLost((e) => lost.push(e));
    await cluster.stop(0);
    await assert.rejects(store.get('/mwtest/lost/k'), (e: any) => e.code === 'ESTORE_UNAVAILABLE' && e.message.includes(cluster.endpoints[0]));
    await eventually(() => lost.length > 0, 10_000, 'lease lost');
    assert.equal((lost[0] as any).code, 'ESTORE_LEASE_LOST');
    await cluster.restart(0);
    // Back up: the store works again and the lost lease's key is gone for good.
    await eventually(async () => (await store.get('/mwtest/lost/k')) === undefined, 15_000, 'key of the lost lease gone');
    await store.close();
  } finally {
    await cluster.cleanup();
  }
});

test('etcd: a store opened with one dead endpoint among live ones works', { skip: !haveEtcd && NEEDS_ETCD }, async () => {
  const cluster = await EtcdCluster.start(1);
  try {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const store = await openStore(`etcd:${dead},${cluster.endpoints[0]}`, { etcd: { callTimeoutMs: 1500 } });
    for (let i = 0; i < 10; i++) await store.put(`/mwtest/mixed/k${i}`, String(i));
    assert.equal((await store.list('/mwtest/mixed/')).items.length, 10);
    await store.close();
  } finally {
    await cluster.cleanup();
  }
});
