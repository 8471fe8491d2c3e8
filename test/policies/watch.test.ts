/** The policy watcher: whole snapshots from the store and from a local file; a bad edit keeps the old one. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { createMemoryStore } from '../../store/memory';
import { keys } from '../../store/keys';
import { applyPolicies, deletePolicies } from '../../policies/apply';
import { PolicyValidationError } from '../../policies/errors';
import { createPolicyMetrics } from '../../policies/metrics';
import { createPolicyWatcher, type PolicySnapshot, type PolicyWatcherMetrics } from '../../policies/watch';
import { eventually, sh } from '../helpers/lab';
import { policy, withService } from './util';

function counting(): PolicyWatcherMetrics & { success: number; failure: number } {
  const m = { success: 0, failure: 0, reload(r: 'success' | 'failure') { m[r]++; } };
  return m;
}

const weights = (snap: PolicySnapshot) => snap.policyByService.get('default/reviews')?.spec.routes[0]?.backends.map((b) => b.weight);
const split = (v1: number, v2: number) => withService(policy(`  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
  routes:
    - name: main
      backends: [{subset: v1, weight: ${v1}}, {subset: v2, weight: ${v2}}]
`));

test('store watcher: apply, change and delete arrive as whole snapshots', async () => {
  const store = createMemoryStore();
  const metrics = counting();
  const errors: Error[] = [];
  const w = createPolicyWatcher({ store, metrics, onError: (e) => errors.push(e) });
  try {
    const first = await w.start();
    assert.equal(first.services.size, 0);
    const seen: PolicySnapshot[] = [];
    w.subscribe((s) => seen.push(s));

    await applyPolicies(store, [{ file: 'a.yaml', text: split(90, 10) }]);
    await eventually(() => w.current().policyByService.has('default/reviews'), 5000, 'policy in the snapshot');
    assert.deepEqual(weights(w.current()), [90, 10]);
    assert.ok(w.current().services.get('default/reviews')?.spec.clusterIP, 'the service carries its allocated IP');
    // A policy never appears without its service: the apply is one snapshot.
    for (const s of seen) for (const tp of s.trafficPolicies.values()) assert.ok(s.services.has(`default/${tp.spec.service}`));

    await applyPolicies(store, [{ file: 'a.yaml', text: split(50, 50) }]);
    await eventually(() => weights(w.current())?.[0] === 50, 5000, 'new weights');
    const held = w.current();

    await deletePolicies(store, [{ kind: 'TrafficPolicy', namespace: 'default', name: 'reviews' }, { kind: 'Service', namespace: 'default', name: 'reviews' }]);
    await eventually(() => w.current().services.size === 0, 5000, 'deletion');
    assert.equal(w.current().trafficPolicies.size, 0);
    assert.deepEqual(weights(held), [50, 50], 'a snapshot already handed out never changes');
    assert.ok(Object.isFrozen(held));
    assert.ok(w.current().revision > first.revision);
    assert.deepEqual(errors, []);
    assert.equal(metrics.failure, 0);
  } finally {
    await w.stop();
    await store.close();
  }
});

test('store watcher: a corrupt entry is reported and keeps its previous version', async () => {
  const store = createMemoryStore();
  const metrics = counting();
  const errors: Error[] = [];
  await applyPolicies(store, [{ file: 'a.yaml', text: split(90, 10) }]);
  const w = createPolicyWatcher({ store, metrics, onError: (e) => errors.push(e) });
  try {
    await w.start();
    await store.put(keys.policy('TrafficPolicy', 'default', 'reviews'), '{"kind":"TrafficPolicy","metadata":{"name":"reviews"}}');
    await eventually(() => errors.length > 0, 5000, 'error reported');
    assert.match(errors[0].message, /\/meshwork\/policies\/TrafficPolicy\/default\/reviews/);
    assert.equal(metrics.failure, 1);
    assert.deepEqual(weights(w.current()), [90, 10]);
  } finally {
    await w.stop();
    await store.close();
  }
});

test('file watcher: edits reload, an invalid edit keeps the previous snapshot and names file:line', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-policies-'));
  const file = path.join(dir, 'policies.yaml');
  fs.writeFileSync(file, split(90, 10));
  const registry = new Registry();
  const prom = createPolicyMetrics(registry);
  const metrics = counting();
  const errors: Error[] = [];
  const w = createPolicyWatcher({
    file, debounceMs: 20, onError: (e) => errors.push(e),
    metrics: { reload: (r) => { metrics.reload(r); prom.reload(r); }, snapshot: (s) => prom.snapshot?.(s) },
  });
  try {
    const first = await w.start();
    assert.deepEqual(weights(first), [90, 10]);

    // Editors often write a new file and rename it over the old one.
    fs.writeFileSync(`${file}.tmp`, split(80, 20));
    fs.renameSync(`${file}.tmp`, file);
    await eventually(() => weights(w.current())?.[0] === 80, 5000, 'reload after rename');

    fs.writeFileSync(file, split(80, 30));
    await eventually(() => errors.length > 0, 5000, 'invalid edit reported');
    assert.ok(errors[0] instanceof PolicyValidationError);
    assert.match(errors[0].message, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+: spec.routes\\[0\\].backends: weights sum to 110`));
    assert.deepEqual(weights(w.current()), [80, 20], 'previous snapshot still in force');

    fs.writeFileSync(file, split(70, 30));
    await eventually(() => weights(w.current())?.[0] === 70, 5000, 'reload after fix');
    assert.ok(metrics.failure >= 1);
    const text = await registry.metrics();
    assert.match(text, /meshwork_policies_reloads_total\{result="failure"\} [1-9]/);
    assert.match(text, /meshwork_policies_documents\{kind="TrafficPolicy"\} 1/);
    if (fs.existsSync('/usr/bin/promtool')) {
      const lint = sh('promtool', ['check', 'metrics'], { input: text, allowFail: true });
      assert.equal(lint.code, 0, `promtool: ${lint.stdout}${lint.stderr}`);
    }
  } finally {
    await w.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('file watcher refuses to start from an invalid file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-policies-'));
  const file = path.join(dir, 'p.yaml');
  fs.writeFileSync(file, policy('  timeout: 1s\n'));
  const w = createPolicyWatcher({ file });
  try {
    await assert.rejects(w.start(), /p.yaml:\d+:\d+: spec.service: service `reviews`/);
    assert.throws(() => w.current(), /not started/);
  } finally {
    await w.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
