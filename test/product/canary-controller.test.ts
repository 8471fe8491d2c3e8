import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createMemoryStore } from '../../store/memory';
import { openStore } from '../../store/open';
import type { Store } from '../../store/types';
import { keys } from '../../store/keys';
import type { TrafficPolicy } from '../../policies/model';
import { createCanaryController } from '../../canary/controller';
import { canaryKeys, type CanaryStatus } from '../../canary/rollout';
import { FakeClock, FakeMesh } from './fake-mesh';
import { eventually, run, repoRoot } from '../helpers/lab';

const INTERVAL = 10_000;

function policy(v2Weight: number, over: Partial<TrafficPolicy['spec']> = {}): TrafficPolicy {
  return {
    kind: 'TrafficPolicy',
    metadata: { name: 'reviews', namespace: 'default', labels: {} },
    spec: {
      service: 'reviews',
      subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }],
      loadBalancer: { type: 'round-robin' },
      routes: [{ name: 'default', matches: [], backends: [{ subset: 'v1', weight: 100 - v2Weight }, { subset: 'v2', weight: v2Weight }] }],
      canary: { subset: 'v2', stableSubset: 'v1', steps: [10, 25, 50, 100], intervalMs: INTERVAL, minSuccessRatePercent: 99, maxP99LatencyMs: 500 },
      ...over,
    },
  };
}
const KEY = keys.policy('TrafficPolicy', 'default', 'reviews');

async function readPolicy(store: Store): Promise<TrafficPolicy> { return JSON.parse((await store.get(KEY))!.value); }
async function v2Weight(store: Store): Promise<number> { return (await readPolicy(store)).spec.routes[0].backends.find((b) => b.subset === 'v2')!.weight; }
async function status(store: Store): Promise<CanaryStatus> { return JSON.parse((await store.get(canaryKeys.status('default', 'reviews')))!.value); }

/** 100 requests from the frontend split by the policy's current weights; v2 failing or slow on demand. */
function traffic(mesh: FakeMesh, store: Store, v2: { failing?: boolean; slow?: boolean } = {}) {
  return async () => {
    const w = await v2Weight(store);
    const fe = mesh.sidecar('frontend');
    fe.call('reviews.default', 'v1', 100 - w, 0.03);
    if (v2.failing) { fe.call('reviews.default', 'v2', Math.ceil(w / 2), 0.03, 503); fe.call('reviews.default', 'v2', Math.floor(w / 2), 0.03); }
    else fe.call('reviews.default', 'v2', w, v2.slow ? 0.9 : 0.03);
  };
}

test('controller: a healthy canary goes 0 -> 10 -> 25 -> 50 -> 100 and Succeeds; decisions in metrics', async () => {
  const store = createMemoryStore();
  const clock = new FakeClock();
  const mesh = new FakeMesh();
  mesh.sidecar('frontend');
  const c = createCanaryController({ store, metrics: mesh.source(() => clock.now()), clock });
  try {
    await store.put(KEY, JSON.stringify(policy(0)));
    const weights: number[] = [];
    for (let i = 0; i < 12; i++) {
      await c.runOnce();
      weights.push(await v2Weight(store));
      if ((await status(store)).phase !== 'Progressing') break;
      await traffic(mesh, store)();
      clock.advance(INTERVAL);
    }
    assert.deepEqual([...new Set(weights)], [10, 25, 50, 100]);
    const st = await status(store);
    assert.equal(st.phase, 'Succeeded');
    assert.equal(st.weight, 100);
    assert.deepEqual(st.events.map((e) => e.action), ['adopt', 'start', 'promote', 'promote', 'promote', 'complete']);
    assert.match(st.lastDecision!.reason, /rollout complete/);
    assert.equal((await readPolicy(store)).spec.routes[0].backends.find((b) => b.subset === 'v1')!.weight, 0);
    const text = await c.metrics.registry.metrics();
    assert.match(text, /meshwork_canary_weight\{namespace="default",policy="reviews",subset="v2"\} 100/);
    assert.match(text, /meshwork_canary_decisions_total\{namespace="default",policy="reviews",decision="promote"\} 3/);
    assert.match(text, /meshwork_canary_phase\{namespace="default",policy="reviews",phase="Succeeded"\} 1/);
    // Terminal: further passes change nothing.
    const rev = (await store.get(KEY))!.modRevision;
    clock.advance(INTERVAL);
    await c.runOnce();
    assert.equal((await store.get(KEY))!.modRevision, rev);
  } finally {
    await c.stop();
    await store.close();
  }
});

for (const mode of ['failing', 'slow'] as const) {
  test(`controller: a ${mode} canary is rolled back within one interval and stays at 0`, async () => {
    const store = createMemoryStore();
    const clock = new FakeClock();
    const mesh = new FakeMesh();
    mesh.sidecar('frontend');
  mesh.sidecar('frontend');
    const c = createCanaryController({ store, metrics: mesh.source(() => clock.now()), clock });
    try {
      await store.put(KEY, JSON.stringify(policy(10)));
      await c.runOnce(); // adopts 10%, takes the baseline
      await traffic(mesh, store)();
      clock.advance(INTERVAL);
      await c.runOnce(); // healthy: 25%
      assert.equal(await v2Weight(store), 25);
      await traffic(mesh, store, { [mode]: true })(); // v2 breaks during this interval
      clock.advance(INTERVAL);
      await c.runOnce();
      assert.equal(await v2Weight(store), 0, 'rolled back at the end of the first bad interval');
      const st = await status(store);
      assert.equal(st.phase, 'RolledBack');
      assert.equal(st.lastDecision!.action, 'rollback');
      assert.match(st.lastDecision!.reason, mode === 'failing' ? /success rate of v2 48% < 99% \(13\/25 failed\)/ : /p99 of v2 \d+(\.\d)?ms > 500ms/);
      assert.equal(st.lastDecision!.canary!.requests, 25);
      for (let i = 0; i < 3; i++) {
        await traffic(mesh, store)();
        clock.advance(INTERVAL);
        await c.runOnce();
      }
      assert.equal(await v2Weight(store), 0);
      assert.match(await c.metrics.registry.metrics(), /decision="rollback"\} 1/);
    } finally {
      await c.stop();
      await store.close();
    }
  });
}

test('controller: a concurrent user edit is kept (CAS), a weight set by hand is adopted', async () => {
  const mem = createMemoryStore();
  let editOnce: (() => Promise<void>) | undefined;
  // A store that lets a "user" write just before the controller's transaction.
  const store: Store = Object.assign(Object.create(null), mem, {
    txn: async (...a: Parameters<Store['txn']>) => { const e = editOnce; editOnce = undefined; await e?.(); return mem.txn(...a); },
  });
  const clock = new FakeClock();
  const mesh = new FakeMesh();
  mesh.sidecar('frontend');
  const c = createCanaryController({ store, metrics: mesh.source(() => clock.now()), clock });
  try {
    await store.put(KEY, JSON.stringify(policy(10)));
    await c.runOnce();
    await traffic(mesh, store)();
    clock.advance(INTERVAL);
    // The user edits an unrelated field while the controller promotes: both survive.
    editOnce = async () => { await mem.put(KEY, JSON.stringify(policy(10, { timeoutMs: 1234 }))); };
    await c.runOnce();
    let p = await readPolicy(store);
    assert.equal(p.spec.timeoutMs, 1234, "the user's edit survived");
    assert.equal(await v2Weight(store), 25, 'the promotion was re-applied on the fresh version');

    // The user sets the weight themselves mid-decision: the controller drops its decision...
    await traffic(mesh, store)();
    clock.advance(INTERVAL);
    editOnce = async () => { await mem.put(KEY, JSON.stringify(policy(40, { timeoutMs: 1234 }))); };
    await c.runOnce();
    assert.equal(await v2Weight(store), 40, 'the user weight was not clobbered');
    // ...and adopts the user's weight on its next pass, restarting analysis there.
    await c.runOnce();
    let st = await status(store);
    assert.equal(st.weight, 40);
    assert.equal(st.lastDecision!.action, 'adopt');
    assert.match(st.lastDecision!.reason, /25% -> 40%/);
    await traffic(mesh, store)();
    clock.advance(INTERVAL);
    await c.runOnce();
    assert.equal(await v2Weight(store), 50);
    p = await readPolicy(store);
    assert.equal(p.spec.timeoutMs, 1234);
    st = await status(store);
    assert.equal(st.phase, 'Progressing');
  } finally {
    await c.stop();
    await mem.close();
  }
});

test('controller: a policy it cannot drive is Failed with the reason; fixing it starts a rollout', async () => {
  const store = createMemoryStore();
  const clock = new FakeClock();
  const mesh = new FakeMesh();
  mesh.sidecar('frontend');
  const c = createCanaryController({ store, metrics: mesh.source(() => clock.now()), clock });
  try {
    const broken = policy(10);
    broken.spec.routes[0].backends.push({ subset: 'v3', weight: 5 });
    broken.spec.routes[0].backends[0].weight = 85;
    await store.put(KEY, JSON.stringify(broken));
    await c.runOnce();
    let st = await status(store);
    assert.equal(st.phase, 'Failed');
    assert.match(st.lastDecision!.reason, /also sends traffic to "v3"/);
    await store.put(KEY, JSON.stringify(policy(10)));
    await c.runOnce();
    st = await status(store);
    assert.equal(st.phase, 'Progressing');
    assert.equal(st.weight, 10);
  } finally {
    await c.stop();
    await store.close();
  }
});

test('controller: an unreadable sidecar holds promotion but never blocks a rollback', async () => {
  const store = createMemoryStore();
  const clock = new FakeClock();
  const mesh = new FakeMesh();
  mesh.sidecar('frontend');
  mesh.sidecar('productpage');
  const c = createCanaryController({ store, metrics: mesh.source(() => clock.now()), clock });
  try {
    await store.put(KEY, JSON.stringify(policy(10)));
    await c.runOnce();
    mesh.down.add('productpage');
    await traffic(mesh, store)();
    clock.advance(INTERVAL);
    await c.runOnce();
    let st = await status(store);
    assert.equal(st.lastDecision!.action, 'hold');
    assert.match(st.lastDecision!.reason, /metrics incomplete.*productpage.*ECONNREFUSED/);
    assert.equal(await v2Weight(store), 10);
    await traffic(mesh, store, { failing: true })();
    clock.advance(INTERVAL);
    await c.runOnce();
    st = await status(store);
    assert.equal(st.phase, 'RolledBack');
  } finally {
    await c.stop();
    await store.close();
  }
});

test('controller on real timers and a file store; `meshwork canary status` shows the result', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-canary-'));
  const spec = `file:${dir}`;
  const store = await openStore(spec);
  const mesh = new FakeMesh();
  mesh.sidecar('frontend');
  const p = policy(0);
  p.spec.canary!.intervalMs = 100;
  const c = createCanaryController({ store, metrics: mesh.source(Date.now, traffic(mesh, store)), relistMs: 100 });
  try {
    await store.put(KEY, JSON.stringify(p));
    await c.start();
    await eventually(async () => (await status(store)).phase === 'Succeeded', 20_000, 'rollout to succeed');
    await c.stop();
    const cli = path.join(repoRoot, 'bin', 'meshwork');
    const table = await run(process.execPath, [cli, 'canary', 'status', '--store', spec]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /POLICY\s+SERVICE\s+CANARY\s+PHASE\s+WEIGHT/);
    assert.match(table.stdout, /default\/reviews\s+reviews\s+v2 \(vs v1\)\s+Succeeded\s+100%\s+10 25 50 \[100\]\s+complete \d+s ago\s+v2 healthy/);
    const json = await run(process.execPath, [cli, 'canary', 'status', '--json', '--store', spec, 'default/reviews']);
    assert.equal(json.code, 0, json.stderr);
    const recs = JSON.parse(json.stdout) as CanaryStatus[];
    assert.equal(recs[0].phase, 'Succeeded');
    assert.ok(recs[0].events.some((e) => e.action === 'promote' && e.toWeight === 50));
    const missing = await run(process.execPath, [cli, 'canary', 'status', '--store', spec, 'nope']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^meshwork: no TrafficPolicy "nope" with a canary\n$/);
  } finally {
    await c.stop();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('controller on the shipped example policy: drives only its canary route, and what it writes still validates', async () => {
  const { loadPolicies } = await import('../../policies/load');
  const { decodeStored, encodeStored, keyOf } = await import('../../policies/stored');
  const file = path.join(repoRoot, 'policies', 'examples', 'reviews.yaml');
  const loaded = loadPolicies([{ file, text: fs.readFileSync(file, 'utf8') }]);
  assert.deepEqual(loaded.issues, []);
  const tp = loaded.documents.map((d) => d.document).find((d): d is TrafficPolicy => d.kind === 'TrafficPolicy')!;
  const store = createMemoryStore();
  const clock = new FakeClock();
  const mesh = new FakeMesh();
  const fe = mesh.sidecar('productpage');
  const c = createCanaryController({ store, metrics: mesh.source(() => clock.now()), clock });
  try {
    await store.put(keyOf(tp), encodeStored(tp));
    await c.runOnce();
    fe.call('reviews.default', 'v1', 90, 0.02, 200, 'default');
    fe.call('reviews.default', 'v2', 10, 0.02, 200, 'default');
    clock.advance(tp.spec.canary!.intervalMs);
    await c.runOnce();
    const kv = (await store.get(keyOf(tp)))!;
    const doc = decodeStored(kv.key, kv.value) as TrafficPolicy;
    assert.deepEqual(doc.spec.routes.find((r) => r.name === 'default')!.backends, [{ subset: 'v1', weight: 75 }, { subset: 'v2', weight: 25 }]);
    assert.deepEqual(doc.spec.routes.find((r) => r.name === 'jason')!.backends, [{ subset: 'v2', weight: 100 }]);
    assert.equal((await status(store)).route, 'default');
  } finally {
    await c.stop();
    await store.close();
  }
});

test('`meshwork canary run` scrapes sidecars over HTTP, promotes to 100% and serves its own metrics', async () => {
  const { spawn } = await import('node:child_process');
  const http = await import('node:http');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-canary-run-'));
  const spec = `file:${dir}`;
  const store = await openStore(spec);
  const mesh = new FakeMesh();
  const gen = traffic(mesh, store);
  // One fake sidecar: every scrape it has served another 100 requests at the current split.
  const sidecar = http.createServer((_req, res) => {
    gen().then(() => mesh.sidecar('frontend').registry.metrics()).then((text) => res.writeHead(200).end(text), (e) => res.writeHead(500).end(String(e)));
  });
  await new Promise<void>((r) => sidecar.listen(0, '127.0.0.1', r));
  const scrapeUrl = `http://127.0.0.1:${(sidecar.address() as { port: number }).port}/metrics`;
  const p = policy(0);
  p.spec.canary!.intervalMs = 150;
  await store.put(KEY, JSON.stringify(p));
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'meshwork'), 'canary', 'run', '--store', spec, '--scrape', scrapeUrl, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  try {
    await eventually(async () => (await status(store)).phase === 'Succeeded', 20_000, `rollout to succeed (stdout: ${out} stderr: ${err})`);
    assert.equal(await v2Weight(store), 100);
    assert.match(out, /default\/reviews promote 50% -> 100%: v2 healthy/);
    const metricsUrl = /metrics on (http:\/\/[^\s,]+)/.exec(out)![1];
    const text = await (await fetch(metricsUrl)).text();
    assert.match(text, /meshwork_canary_weight\{namespace="default",policy="reviews",subset="v2"\} 100/);
    // The dashboard served next to it samples the same store every 2 s.
    await eventually(async () => {
      const graph = await (await fetch(metricsUrl.replace(/\/metrics$/, '/dashboard/api/graph'))).json() as { canaries: Array<{ phase: string; weight: number }> };
      return graph.canaries.length === 1 && graph.canaries[0].phase === 'Succeeded' && graph.canaries[0].weight === 100;
    }, 10_000, 'the dashboard to show the finished rollout');
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0, err);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    sidecar.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('controller: a deleted policy is forgotten and its gauges go away', async () => {
  const store = createMemoryStore();
  const clock = new FakeClock();
  const mesh = new FakeMesh();
  const c = createCanaryController({ store, metrics: mesh.source(() => clock.now()), clock });
  try {
    await store.put(KEY, JSON.stringify(policy(0)));
    await c.runOnce();
    assert.match(await c.metrics.registry.metrics(), /meshwork_canary_weight\{namespace="default",policy="reviews",subset="v2"\} 10/);
    await store.delete(KEY);
    await c.runOnce();
    const text = await c.metrics.registry.metrics();
    assert.doesNotMatch(text, /meshwork_canary_weight\{/);
    assert.doesNotMatch(text, /meshwork_canary_phase\{/);
  } finally {
    await c.stop();
    await store.close();
  }
});
