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

test('etcd: watches resumed after a member restart, one from a compacted revision, beside a live one: no crash, every watch delivers', { skip: !haveEtcd && NEEDS_ETCD, timeout: 90_000 }, async () => {
  // The client (etcd3) multiplexes watches on one stream; etcd cancelling one of them
  // (compacted on resume) while another stays on the stream used to throw from its
  // stream handler, uncaught, which killed the agent.
  const uncaught: Error[] = [];
  const onUncaught = (e: Error) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  const cluster = await EtcdCluster.start(3);
  const others = new Etcd3({ hosts: cluster.endpoints.slice(1) });
  try {
    // The store talks to member 0 only, so stopping it disconnects every watch.
    const store = await openStore(`etcd:${cluster.endpoints[0]}`, { etcd: { callTimeoutMs: 1500 } });
    const got = { a: [] as string[], b: [] as string[] };
    const errors: Error[] = [];
    const l = await store.list('/mwtest/w/');
    const wa = await store.watch('/mwtest/w/a/', (ev) => got.a.push(ev.type === 'put' ? ev.kv.value : 'deleted'), { fromRevision: l.revision + 1, onError: (e) => errors.push(e) });
    const wb = await store.watch('/mwtest/w/b/', (ev) => got.b.push(ev.type === 'put' ? ev.kv.value : 'deleted'), { fromRevision: l.revision + 1, onError: (e) => errors.push(e) });
    await store.put('/mwtest/w/a/k', 'a1');
    const rb = await store.put('/mwtest/w/b/k', 'b1');
    await eventually(() => got.a.length === 1 && got.b.length === 1, 5000, 'first events');
    // While member 0 is away: a's resume point (rb) falls before the compaction, b's (rb + 1) does not.
    await cluster.stop(0);
    const retry = async <T>(fn: () => Promise<T>): Promise<T> => eventually(() => fn().then((v) => v ?? true, () => false), 20_000, 'write through the other members') as Promise<T>;
    await retry(() => others.put('/mwtest/w/a/k').value('a2').exec());
    await retry(() => others.kv.compact({ revision: rb + 1, physical: true }));
    await cluster.restart(0);
    await eventually(() => errors.length > 0, 15_000, 'a compacted error for watch a');
    assert.equal((errors[0] as any).code, 'ESTORE_COMPACTED', errors[0].message);
    // b stayed on its stream and keeps delivering; a re-listed and re-watched delivers too.
    const la = await store.list('/mwtest/w/a/');
    assert.equal(la.items[0].value, 'a2');
    const wa2 = await store.watch('/mwtest/w/a/', (ev) => got.a.push(ev.type === 'put' ? ev.kv.value : 'deleted'), { fromRevision: la.revision + 1, onError: (e) => errors.push(e) });
    await wa.close();
    await store.put('/mwtest/w/b/k', 'b2');
    await store.put('/mwtest/w/a/k', 'a3');
    await eventually(() => got.b.includes('b2') && got.a.includes('a3'), 10_000, 'events after the resume');
    await new Promise((r) => setTimeout(r, 1000)); // a late answer from etcd would throw now
    assert.deepEqual(uncaught.map((e) => e.message), [], 'uncaught errors from the etcd client');
    assert.equal(errors.length, 1, errors.map((e) => e.message).join('; '));
    await Promise.all([wa2.close(), wb.close()]);
    await store.close();
  } finally {
    others.close();
    process.removeListener('uncaughtException', onUncaught);
    await cluster.cleanup();
  }
});
