/**
 * The one contract every Store backend passes (memory, file, etcd). A backend
 * hands in how to open a fresh store and, where it can, how to reach the same
 * store from another process (its spec), how to drop history, and how to cut
 * a live connection. Every test writes under its own random prefix, so a
 * shared etcd cluster needs no wiping between tests.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import type { KeyValue, Lease, Store, WatchEvent } from '../../store/types';
import { eventually } from '../helpers/lab';

export interface OpenedStore {
  store: Store;
  /** Spec another process opens to reach this same store (absent: in-process only). */
  spec?: string;
}

export interface StoreBackend {
  name: string;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /** A store for one test; `historyLimit` asks for a short history (backends that have one). */
  open(opts?: { historyLimit?: number }): Promise<OpenedStore>;
  /** Stops renewing a lease as if its holder died (in-process backends). */
  abandonLease?(store: Store, lease: Lease): void;
  /** Makes the backend forget history up to `revision` (etcd compaction). */
  compact?(revision: number): Promise<void>;
  /** Cuts the store's connection while `during` runs more writes, then restores it. */
  interrupt?(during: () => Promise<void>): Promise<void>;
  /** Runs between the basic tests and the rest (e.g. stops one etcd member). */
  midway?(): Promise<void>;
  /** Lease TTL to use in tests, seconds (etcd rounds tiny TTLs up). */
  leaseTtl?: number;
  /** File store only: kill writers mid-write and check the store stays readable. */
  killWriters?: boolean;
}

const CHILD = path.join(__dirname, 'child.js');

/** Child processes of one test, killed at the end whatever happens. */
class Children {
  private readonly procs: ChildProcess[] = [];

  start(args: string[]): { proc: ChildProcess; lines: string[]; stderr: () => string } {
    const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(proc);
    const lines: string[] = [];
    let buf = '';
    let err = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      lines.push(...parts);
    });
    proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    return { proc, lines, stderr: () => err };
  }

  async exit(proc: ChildProcess): Promise<number | string> {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode ?? proc.signalCode!;
    return new Promise((r) => proc.once('exit', (code, sig) => r(code ?? sig!)));
  }

  async kill(proc: ChildProcess): Promise<void> {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const done = this.exit(proc);
    proc.kill('SIGKILL');
    await done;
  }

  async killAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => this.kill(p)));
  }
}

function prefix(): string {
  return `/mwtest/${crypto.randomBytes(4).toString('hex')}/`;
}

function keyOf(ev: WatchEvent): string {
  return ev.type === 'put' ? ev.kv.key : ev.key;
}

/** Collects a watch's events; `until` waits for a condition on them. */
function collector(): { events: WatchEvent[]; push: (ev: WatchEvent) => void; until: (pred: (evs: WatchEvent[]) => boolean, what: string, ms?: number) => Promise<void> } {
  const events: WatchEvent[] = [];
  return {
    events,
    push: (ev) => { events.push(ev); },
    until: async (pred, what, ms = 10_000) => { await eventually(() => pred(events), ms, what); },
  };
}

export function storeContract(b: StoreBackend): void {
  describe(`store contract: ${b.name}`, () => contract(b));
}

function contract(b: StoreBackend): void {
  const opened: Store[] = [];
  async function open(opts?: { historyLimit?: number }): Promise<OpenedStore> {
    const o = await b.open(opts);
    opened.push(o.store);
    return o;
  }
  const ttl = b.leaseTtl ?? 1;

  before(async () => { await b.setup?.(); });
  after(async () => {
    await Promise.all(opened.map((s) => s.close()));
    await b.teardown?.();
  });

  test(`${b.name}: put, get and delete keep etcd's revision rules`, async () => {
    const { store } = await open();
    const p = prefix();
    assert.equal(await store.get(`${p}a`), undefined);
    const r1 = await store.put(`${p}a`, '"one"');
    const a1 = await store.get(`${p}a`) as KeyValue;
    assert.deepEqual(a1, { key: `${p}a`, value: '"one"', modRevision: r1, createRevision: r1 });
    const r2 = await store.put(`${p}a`, '"two"');
    assert.ok(r2 > r1, 'every write bumps the store revision');
    const a2 = await store.get(`${p}a`) as KeyValue;
    assert.equal(a2.value, '"two"');
    assert.equal(a2.modRevision, r2);
    assert.equal(a2.createRevision, r1, 'an update keeps the create revision');
    const r3 = await store.put(`${p}b`, '{}');
    assert.ok(r3 > r2, 'revisions are store-wide, not per key');
    assert.equal(await store.delete(`${p}a`), true);
    assert.equal(await store.get(`${p}a`), undefined);
    assert.equal(await store.delete(`${p}a`), false, 'deleting a missing key reports it');
    const r4 = await store.put(`${p}a`, '"three"');
    assert.equal((await store.get(`${p}a`))!.createRevision, r4, 're-created key gets a new create revision');
  });

  test(`${b.name}: list returns a prefix, sorted, with the revision to watch from`, async () => {
    const { store } = await open();
    const p = prefix();
    await store.put(`${p}x/2`, '2');
    await store.put(`${p}x/1`, '1');
    await store.put(`${p}x/10`, '10');
    await store.put(`${p}y/1`, 'other');
    const last = await store.put(`${p}x/3`, '3');
    const res = await store.list(`${p}x/`);
    assert.deepEqual(res.items.map((kv) => kv.key), [`${p}x/1`, `${p}x/10`, `${p}x/2`, `${p}x/3`]);
    assert.deepEqual(res.items.map((kv) => kv.value), ['1', '10', '2', '3']);
    assert.ok(res.revision >= last);
    assert.deepEqual((await store.list(`${p}none/`)).items, []);
  });

  test(`${b.name}: compare-and-set creates, updates and deletes only on the expected revision`, async () => {
    const { store } = await open();
    const k = `${prefix()}c`;
    assert.equal(await store.cas(k, 0, 'v1'), true, 'expected 0 creates an absent key');
    assert.equal(await store.cas(k, 0, 'v1b'), false, 'expected 0 fails when the key exists');
    const kv = (await store.get(k))!;
    assert.equal(kv.value, 'v1');
    assert.equal(await store.cas(k, kv.modRevision + 1000, 'x'), false);
    const before = (await store.list(k)).revision;
    assert.equal(await store.cas(k, kv.modRevision - 1, 'x'), false);
    assert.equal((await store.list(k)).revision, before, 'a failed CAS does not bump the revision');
    assert.equal(await store.cas(k, kv.modRevision, 'v2'), true);
    assert.equal(await store.cas(k, kv.modRevision, 'v3'), false, 'a stale revision loses');
    const kv2 = (await store.get(k))!;
    assert.equal(kv2.value, 'v2');
    assert.equal(await store.cas(k, kv.modRevision, null), false);
    assert.equal(await store.cas(k, kv2.modRevision, null), true, 'null deletes');
    assert.equal(await store.get(k), undefined);
  });

  test(`${b.name}: txn applies all or nothing, in one revision`, async () => {
    const { store } = await open();
    const p = prefix();
    await store.put(`${p}a`, 'a0');
    await store.put(`${p}b`, 'b0');
    const a = (await store.get(`${p}a`))!;
    const bb = (await store.get(`${p}b`))!;
    // One compare is stale: nothing happens.
    assert.equal(await store.txn([{ key: `${p}a`, modRevision: a.modRevision }, { key: `${p}b`, modRevision: bb.modRevision - 1 }],
      [{ op: 'put', key: `${p}a`, value: 'a1' }, { op: 'delete', key: `${p}b` }, { op: 'put', key: `${p}c`, value: 'c1' }]), false);
    assert.equal((await store.get(`${p}a`))!.value, 'a0');
    assert.equal((await store.get(`${p}c`)), undefined);
    assert.equal(await store.txn([{ key: `${p}a`, modRevision: a.modRevision }, { key: `${p}b`, modRevision: bb.modRevision }, { key: `${p}c`, modRevision: 0 }],
      [{ op: 'put', key: `${p}a`, value: 'a1' }, { op: 'delete', key: `${p}b` }, { op: 'put', key: `${p}c`, value: 'c1' }]), true);
    const a1 = (await store.get(`${p}a`))!;
    const c1 = (await store.get(`${p}c`))!;
    assert.equal(a1.value, 'a1');
    assert.equal(await store.get(`${p}b`), undefined);
    assert.equal(a1.modRevision, c1.modRevision, 'all ops of a txn share one revision');
    assert.equal(await store.txn([], [{ op: 'put', key: `${p}d`, value: 'd' }]), true, 'no compares: always applies');
  });

  test(`${b.name}: bad arguments are refused with a clear error`, async () => {
    const { store } = await open();
    const p = prefix();
    await assert.rejects(store.put('', 'x'), (e: any) => e.code === 'ESTORE_ARGUMENT' && /key must be a non-empty string/.test(e.message));
    await assert.rejects(store.put(`${p}k`, 42 as unknown as string), (e: any) => e.code === 'ESTORE_ARGUMENT' && /value must be a string/.test(e.message));
    await assert.rejects(store.txn([], [{ op: 'put', key: `${p}k`, value: '1' }, { op: 'delete', key: `${p}k` }]),
      (e: any) => e.code === 'ESTORE_ARGUMENT' && /appears twice/.test(e.message));
    await assert.rejects(store.grantLease(0), (e: any) => e.code === 'ESTORE_ARGUMENT');
    await assert.rejects(store.watch(p, () => undefined, { fromRevision: -1 }), (e: any) => e.code === 'ESTORE_ARGUMENT');
  });

  test(`${b.name}: midway`, async () => { await b.midway?.(); });

  test(`${b.name}: leases attach keys, renew themselves and revoke deletes their keys`, async () => {
    const { store } = await open();
    const p = prefix();
    const lease = await store.grantLease(ttl);
    assert.equal(lease.ttlSeconds, ttl);
    await store.put(`${p}l1`, 'x', { lease: lease.id });
    assert.equal(await store.cas(`${p}l2`, 0, 'y', { lease: lease.id }), true);
    assert.equal((await store.get(`${p}l1`))!.lease, lease.id);
    await store.put(`${p}plain`, 'z');
    assert.equal((await store.get(`${p}plain`))!.lease, undefined);
    // Renewed automatically: still there after two TTLs (checked all along, not slept through).
    const until = Date.now() + ttl * 2000 + 500;
    while (Date.now() < until) {
      assert.ok(await store.get(`${p}l1`), 'a live lease keeps its keys');
      await new Promise((r) => setTimeout(r, 100));
    }
    await lease.keepAlive();
    await lease.revoke();
    assert.equal(await store.get(`${p}l1`), undefined);
    assert.equal(await store.get(`${p}l2`), undefined);
    assert.ok(await store.get(`${p}plain`));
    await assert.rejects(store.put(`${p}l3`, 'x', { lease: lease.id }), (e: any) => e.code === 'ESTORE_LEASE_NOT_FOUND');
  });

  test(`${b.name}: a lease whose holder dies expires and a live watcher sees its keys go`, async () => {
    const { store, spec } = await open();
    const p = prefix();
    const seen = collector();
    const w = await store.watch(p, seen.push);
    const kids = new Children();
    try {
      if (spec) {
        const c = kids.start(['lease', spec, `${p}node`, String(ttl)]);
        await eventually(() => c.lines.some((l) => l.startsWith('ready')), 20_000, `lease child ready (${c.stderr()})`);
        assert.ok(await store.get(`${p}node`));
        await kids.kill(c.proc); // SIGKILL: no chance to revoke
      } else {
        assert.ok(b.abandonLease, 'in-process backends must offer abandonLease');
        const lease = await store.grantLease(ttl);
        await store.put(`${p}node`, 'x', { lease: lease.id });
        b.abandonLease(store, lease);
      }
      // Nobody writes: expiry must be noticed by the backend itself.
      await seen.until((evs) => evs.some((ev) => ev.type === 'delete' && ev.key === `${p}node`), `delete of ${p}node after lease expiry`, ttl * 1000 + 6000);
      assert.equal(await store.get(`${p}node`), undefined);
    } finally {
      await kids.killAll();
      await w.close();
    }
  });

  test(`${b.name}: watch delivers changes under its prefix in revision order, and replays from a revision`, async () => {
    const { store } = await open();
    const p = prefix();
    const live = collector();
    const w = await store.watch(`${p}w/`, live.push);
    const start = await store.put(`${p}w/a`, '1');
    await store.put(`${p}other`, 'not watched');
    await store.put(`${p}w/b`, '2');
    await store.put(`${p}w/a`, '3');
    await store.delete(`${p}w/b`);
    await store.txn([], [{ op: 'put', key: `${p}w/c`, value: '4' }, { op: 'put', key: `${p}w/d`, value: '5' }]);
    await live.until((evs) => evs.length >= 6, 'six watched changes');
    assert.deepEqual(live.events.map((ev) => `${ev.type} ${keyOf(ev).slice(p.length)}`), ['put w/a', 'put w/b', 'put w/a', 'delete w/b', 'put w/c', 'put w/d']);
    const revs = live.events.map((ev) => ev.revision);
    assert.deepEqual([...revs].sort((x, y) => x - y), revs, 'in revision order');
    assert.equal(revs[4], revs[5], 'a txn is one revision');
    const e2 = live.events[2];
    assert.ok(e2.type === 'put' && e2.kv.value === '3' && e2.kv.createRevision === start);
    // Replay from the first revision gives exactly the same stream.
    const replay = collector();
    const w2 = await store.watch(`${p}w/`, replay.push, { fromRevision: start });
    await replay.until((evs) => evs.length >= 6, 'replayed changes');
    assert.deepEqual(replay.events, live.events);
    // After close, nothing more arrives.
    await w.close();
    await w2.close();
    await store.put(`${p}w/e`, '6');
    const probe = collector();
    const w3 = await store.watch(`${p}w/`, probe.push, { fromRevision: start });
    await probe.until((evs) => evs.length >= 7, 'the later change');
    await w3.close();
    assert.equal(live.events.length, 6, 'a closed watch receives nothing');
  });

  test(`${b.name}: watch from a forgotten revision fails with a compacted error`, async () => {
    const { store } = await open({ historyLimit: 5 });
    const p = prefix();
    const first = await store.put(`${p}k`, '0');
    let last = first;
    for (let i = 1; i < 20; i++) last = await store.put(`${p}k`, String(i));
    await b.compact?.(last - 2);
    const errors: Error[] = [];
    const w = await store.watch(p, () => assert.fail('no event expected'), { fromRevision: first, onError: (e) => errors.push(e) });
    await eventually(() => errors.length > 0, 5000, 'compacted error');
    assert.equal((errors[0] as any).code, 'ESTORE_COMPACTED', errors[0].message);
    assert.match(errors[0].message, /compacted/);
    await w.close();
    await assert.rejects(store.watch(p, () => undefined, { fromRevision: first }), (e: any) => e.code === 'ESTORE_COMPACTED');
    // A recent revision is still fine.
    const ok = collector();
    const w2 = await store.watch(p, ok.push, { fromRevision: last });
    await ok.until((evs) => evs.length === 1, 'the last change');
    await w2.close();
  });

  test(`${b.name}: concurrent compare-and-set increments never lose an update`, async () => {
    const { store, spec } = await open();
    const k = `${prefix()}counter`;
    const workers = 4;
    const each = 50;
    const kids = new Children();
    try {
      if (spec) {
        const cs = Array.from({ length: workers }, () => kids.start(['cas', spec, k, String(each)]));
        for (const c of cs) {
          const code = await kids.exit(c.proc);
          assert.equal(code, 0, `cas child failed: ${c.stderr()}`);
        }
      } else {
        await Promise.all(Array.from({ length: workers }, async () => {
          for (let done = 0; done < each;) {
            const kv = await store.get(k);
            if (await store.cas(k, kv?.modRevision ?? 0, String(Number(kv?.value ?? '0') + 1))) done++;
          }
        }));
      }
      assert.equal((await store.get(k))!.value, String(workers * each));
    } finally {
      await kids.killAll();
    }
  });

  test(`${b.name}: a watcher process killed and restarted from its last revision misses nothing`, async (t) => {
    const { store, spec } = await open();
    if (!spec) { t.skip('in-process backend'); return; }
    const p = prefix();
    const kids = new Children();
    try {
      const from = (await store.list(p)).revision + 1;
      const total = 60;
      const got: WatchEvent[] = [];
      let next = from;
      let written = 0;
      // Three watcher lifetimes: killed twice mid-stream, each restart resumes at the last revision seen + 1.
      for (let life = 0; life < 3; life++) {
        const c = kids.start(['watch', spec, p, String(next)]);
        await eventually(() => c.lines.includes('watching'), 20_000, 'watcher ready').catch((e) => {
          throw new Error(`${e.message}: exit ${c.proc.exitCode ?? c.proc.signalCode}, stdout ${JSON.stringify(c.lines.slice(0, 5))}, stderr ${c.stderr()}`);
        });
        const target = life < 2 ? written + 20 : total;
        while (written < target) await store.put(`${p}k${written % 7}`, String(written++));
        const parse = () => c.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as WatchEvent);
        if (life < 2) {
          // Kill it as soon as it has delivered a few of this round's events, usually mid-stream.
          await eventually(() => parse().length >= 5, 20_000, 'watcher progress');
          await kids.kill(c.proc);
        } else {
          await eventually(() => got.length + parse().length >= total, 20_000, `all ${total} events (${c.stderr()})`);
          await kids.kill(c.proc);
        }
        const evs = parse();
        got.push(...evs);
        if (evs.length > 0) next = evs[evs.length - 1].revision + 1;
      }
      assert.deepEqual(got.map((ev) => (ev.type === 'put' ? ev.kv.value : 'delete')), Array.from({ length: total }, (_, i) => String(i)));
      const revs = got.map((ev) => ev.revision);
      assert.equal(new Set(revs).size, revs.length, 'no duplicates');
    } finally {
      await kids.killAll();
    }
  });

  test(`${b.name}: a watch resumed after a disconnect misses no change and repeats none`, async (t) => {
    if (!b.interrupt) { t.skip('no connection to cut in this backend'); return; }
    const { store } = await open();
    const p = prefix();
    const seen = collector();
    const w = await store.watch(p, seen.push);
    let n = 0;
    const write = async () => {
      for (let i = 0; i < 5; i++) {
        const v = String(n);
        // The member we talk to may be down: retry until a member takes the write.
        await eventually(async () => { await store.put(`${p}k${n % 3}`, v); return true; }, 30_000, `write ${v}`);
        n++;
      }
    };
    try {
      await write();
      await b.interrupt(write);
      await write();
      await seen.until((evs) => evs.length >= n, `${n} events after the disconnect`, 30_000).catch((e) => {
        throw new Error(`${e.message}; got ${JSON.stringify(seen.events.map((ev) => [ev.revision, ev.type === 'put' ? ev.kv.value : '']))}`);
      });
      assert.deepEqual(seen.events.map((ev) => (ev.type === 'put' ? ev.kv.value : '')), Array.from({ length: n }, (_, i) => String(i)));
    } finally {
      await w.close();
    }
  });

  test(`${b.name}: a writer killed mid-write leaves the store readable and consistent`, async (t) => {
    if (!b.killWriters) { t.skip('not a file store'); return; }
    const { store, spec } = await open();
    const p = prefix();
    const kids = new Children();
    try {
      for (let round = 0; round < 12; round++) {
        const c = kids.start(['write', spec!, p, '4096']);
        // Let it get into its loop, then kill it at a varying point.
        const target = 3 + ((round * 7) % 11);
        await eventually(() => c.lines.length >= target, 20_000, `writer progress (${c.stderr()})`);
        await kids.kill(c.proc);
        const res = await store.list(`${p}k`);
        assert.ok(res.items.length > 0);
        for (const kv of res.items) {
          const v = JSON.parse(kv.value) as { i: number; pad: string };
          assert.equal(v.pad.length, (v.i * 37) % 400, 'value intact');
          assert.ok(kv.modRevision <= res.revision);
        }
        // The dead writer's lock does not block the next writer.
        await store.put(`${p}z/after`, String(round));
      }
      assert.equal((await store.get(`${p}z/after`))!.value, '11');
    } finally {
      await kids.killAll();
    }
  });
}
