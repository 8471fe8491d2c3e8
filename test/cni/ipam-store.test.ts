/** One compliance suite that every reservation store runs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createFileStore } from '../../cni/ipam/file-store';
import { type ReservationStore, createMemoryStore } from '../../cni/ipam/store';
import { MeshworkError } from '../../lib/errors';

interface Backend { name: string; make(): { store: ReservationStore; dispose(): void } }

const backends: Backend[] = [
  { name: 'memory', make: () => ({ store: createMemoryStore(), dispose: () => {} }) },
  {
    name: 'file',
    make: () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-store-'));
      return { store: createFileStore({ dataDir: dir }), dispose: () => fs.rmSync(dir, { recursive: true, force: true }) };
    },
  },
];

for (const b of backends) {
  test(`${b.name} store: empty at first, persists what update returns, keeps networks apart`, async () => {
    const { store, dispose } = b.make();
    try {
      assert.deepEqual(await store.read('n1'), { allocations: [], lastReserved: {} });
      const v = await store.update('n1', (s) => ({
        state: { ...s, allocations: [{ containerID: 'a', ifname: 'eth0', ips: ['10.0.0.2'] }] },
        value: 42,
      }));
      assert.equal(v, 42);
      assert.deepEqual((await store.read('n1')).allocations, [{ containerID: 'a', ifname: 'eth0', ips: ['10.0.0.2'] }]);
      assert.deepEqual((await store.read('n2')).allocations, []);
      // No state returned: nothing changes.
      await store.update('n1', () => ({ value: 0 }));
      assert.equal((await store.read('n1')).allocations.length, 1);
      // A throwing update changes nothing and the error comes out.
      await assert.rejects(store.update('n1', () => { throw new Error('boom'); }), /boom/);
      assert.equal((await store.read('n1')).allocations.length, 1);
      // A snapshot is a copy: mutating it does not reach the store.
      (await store.read('n1')).allocations.length = 0;
      assert.equal((await store.read('n1')).allocations.length, 1);
    } finally {
      dispose();
    }
  });

  test(`${b.name} store: concurrent read-modify-write updates never lose one`, async () => {
    const { store, dispose } = b.make();
    try {
      await Promise.all(Array.from({ length: 100 }, () => store.update('ctr', (s) => {
        const n = Number(s.lastReserved.count ?? '0');
        return { state: { ...s, lastReserved: { count: String(n + 1) } }, value: n };
      })));
      assert.equal((await store.read('ctr')).lastReserved.count, '100');
    } finally {
      dispose();
    }
  });
}

test('file store lock: a live holder makes callers wait, then answer code 11; dead or ancient holders are broken', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-lock-'));
  try {
    const lock = path.join(dir, 'n', 'lock');
    fs.mkdirSync(path.dirname(lock));
    const store = createFileStore({ dataDir: dir, lockTimeoutMs: 200, staleMs: 60_000 });
    const write = () => store.update('n', (s) => ({ state: { ...s, lastReserved: { x: '1' } }, value: 1 }));

    fs.writeFileSync(lock, '1\n'); // pid 1 is alive: a real holder
    await assert.rejects(write(), (err: unknown) => {
      assert.ok(err instanceof MeshworkError);
      assert.equal(err.code, '11');
      assert.match(err.message, /network n .*still held by pid 1.*try again later/);
      return true;
    });
    assert.equal(fs.readFileSync(lock, 'utf8'), '1\n', 'a live holder keeps its lock');

    // A holder that is gone: the pid of a process that has exited.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    fs.writeFileSync(lock, `${gone}\n`);
    assert.equal(await write(), 1);

    // An owner that cannot be checked, older than staleMs.
    fs.writeFileSync(lock, 'somewhere-else\n');
    const past = new Date(Date.now() - 120_000);
    fs.utimesSync(lock, past, past);
    assert.equal(await write(), 1);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'n')).sort(), ['state.json'], 'no lock or temp file left');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
