import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { storeContract } from './contract';
import { openFileStore } from '../../store/file';
import { openStore } from '../../store/open';
import { eventually } from '../helpers/lab';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-filestore-'));
let n = 0;

storeContract({
  name: 'file',
  async open(opts) {
    const dir = path.join(root, `s${n++}`);
    return { store: await openFileStore(dir, { historyLimit: opts?.historyLimit }), spec: `file:${dir}` };
  },
  killWriters: true,
  async teardown() { fs.rmSync(root, { recursive: true, force: true }); },
});

test('file: a corrupt state file is reported with its path, not a stack trace', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-filestore-bad-'));
  try {
    fs.writeFileSync(path.join(dir, 'snapshot.json'), '{"format":"meshwork-store/2", "revis');
    const store = await openStore(`file:${dir}`);
    await assert.rejects(store.get('/k'), (e: any) => e.code === 'ESTORE_CORRUPT' && e.message.includes(path.join(dir, 'snapshot.json')));
    await store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('file: a lock left by a dead process is taken over at once', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-filestore-lock-'));
  try {
    // pid 2^22+1 is above pid_max's default ceiling: never a live process.
    fs.writeFileSync(path.join(dir, 'store.lock'), `${2 ** 22 + 1} 12345 ${fs.readlinkSync('/proc/self/ns/pid')} ${Date.now()}\n`);
    fs.writeFileSync(path.join(dir, 'snapshot.json.tmp-4194305-dead'), 'half a write');
    const store = await openStore(dir);
    await store.put('/k', 'v');
    assert.equal((await store.get('/k'))!.value, 'v');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['wal-0.log'], 'stale lock and temp file are gone');
    await store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('file: a torn last log line is never read and is cut by the next writer', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-filestore-torn-'));
  try {
    const a = await openFileStore(dir);
    await a.put('/k', '1');
    fs.appendFileSync(path.join(dir, 'wal-0.log'), '{"r":99,"ev":[{"type":"put","kv":{"key":"/k","val');
    const b = await openFileStore(dir);
    assert.equal((await b.get('/k'))!.value, '1');
    const rev = await b.put('/k', '2');
    assert.equal(rev, 3, 'the torn record did not count');
    assert.equal((await a.get('/k'))!.value, '2');
    const lines = fs.readFileSync(path.join(dir, 'wal-0.log'), 'utf8').split('\n').filter(Boolean);
    assert.equal(lines.length, 2);
    for (const l of lines) JSON.parse(l);
    await a.close();
    await b.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('file: the log folds into snapshots; state and watch history survive it, across processes', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-filestore-compact-'));
  try {
    const a = await openFileStore(dir, { walBytes: 2048, historyLimit: 100 });
    const b = await openFileStore(dir, { walBytes: 2048, historyLimit: 100 });
    const seen: string[] = [];
    const start = (await b.list('/c/')).revision + 1;
    const w = await b.watch('/c/', (ev) => { if (ev.type === 'put') seen.push(ev.kv.value); });
    for (let i = 0; i < 60; i++) await a.put(`/c/k${i % 5}`, String(i));
    const snapshots = fs.readdirSync(dir).filter((n) => n.startsWith('wal-'));
    assert.equal(snapshots.length, 1, 'one live log');
    assert.ok(fs.existsSync(path.join(dir, 'snapshot.json')), 'compacted at least once');
    assert.notEqual(snapshots[0], 'wal-0.log');
    await eventually(() => seen.length === 60, 5000, 'all changes through compactions');
    assert.deepEqual(seen, Array.from({ length: 60 }, (_, i) => String(i)));
    const fresh = await openFileStore(dir);
    assert.deepEqual((await fresh.list('/c/')).items.map((kv) => kv.value), ['55', '56', '57', '58', '59']);
    const replay: string[] = [];
    const w2 = await fresh.watch('/c/', (ev) => { if (ev.type === 'put') replay.push(ev.kv.value); }, { fromRevision: start + 30 });
    await eventually(() => replay.length === 30, 5000, 'replay from the snapshot history');
    assert.deepEqual(replay, Array.from({ length: 30 }, (_, i) => String(30 + i)));
    await w.close();
    await w2.close();
    for (const s of [a, b, fresh]) await s.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
