/**
 * `meshwork policy` as users run it (a child process), against the file store
 * and etcd, observed through a policy watcher in this process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openStore } from '../../store/open';
import type { Store } from '../../store/types';
import { createPolicyWatcher, type PolicyWatcher } from '../../policies/watch';
import { loadPolicies } from '../../policies/load';
import { keyOf, readStored } from '../../policies/stored';
import { eventually, run } from '../helpers/lab';
import { EtcdCluster, haveEtcd, NEEDS_ETCD } from '../helpers/etcd';
import { examplesDir, repo } from './util';

const BIN = path.join(repo, 'bin', 'meshwork');

interface Backend { name: string; skip?: string | false; setup(): Promise<{ spec: string; teardown(): Promise<void> }> }

const BACKENDS: Backend[] = [
  {
    name: 'file store',
    async setup() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-policy-cli-'));
      return { spec: `file:${dir}/store`, teardown: async () => fs.rmSync(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'etcd',
    skip: !haveEtcd && NEEDS_ETCD,
    async setup() {
      const c = await EtcdCluster.start(1);
      return { spec: c.spec, teardown: () => c.cleanup() };
    },
  },
];

function split(v1: number, v2: number, extra = ''): string {
  return fs.readFileSync(path.join(examplesDir, 'reviews.yaml'), 'utf8')
    .replace('weight: 90', `weight: ${v1}`).replace('weight: 10', `weight: ${v2}`) + extra;
}

for (const b of BACKENDS) {
  test(`meshwork policy on the ${b.name}: apply, change, get round-trip, all-or-nothing, delete`, { skip: b.skip }, async () => {
    const env = await b.setup();
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-policy-files-'));
    let store: Store | undefined;
    let watcher: PolicyWatcher | undefined;
    const cli = (...args: string[]) => run(process.execPath, [BIN, 'policy', ...args], { env: { ...process.env, MESHWORK_STORE: env.spec, MESHWORK_DEBUG: '' } });
    const write = (name: string, text: string) => { const f = path.join(tmp, name); fs.writeFileSync(f, text); return f; };
    try {
      store = await openStore(env.spec);
      watcher = createPolicyWatcher({ store });
      await watcher.start();
      const w = watcher;
      const weights = () => w.current().policyByService.get('default/reviews')?.spec.routes.find((r) => r.name === 'default')?.backends.map((x) => x.weight);

      // validate: examples pass; a bad file lists every error with file:line:col, exit 1, no stack.
      const ok = await cli('validate', examplesDir);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /14 documents valid in 4 files/);
      const badFile = write('bad.yaml', split(90, 20).replace('timeout: 2s', 'timeout: 0s').replace('weight: 20', 'wieght: 20'));
      const bad = await cli('validate', badFile);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, new RegExp(`${badFile}:\\d+:\\d+: spec.timeout: duration "0s" is zero`));
      assert.match(bad.stderr, new RegExp(`${badFile}:\\d+:\\d+: spec.routes\\[1\\].backends\\[1\\].wieght: unknown field \`wieght\`; did you mean \`weight\`\\?`));
      assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');

      // apply: created, then seen by the watcher.
      const reviews = write('reviews.yaml', split(90, 10));
      const a1 = await cli('apply', '-f', reviews);
      assert.equal(a1.code, 0, a1.stderr);
      assert.equal(a1.stdout, 'service/reviews created\ntrafficpolicy/reviews created\n');
      await eventually(() => weights()?.[0] === 90, 10_000, 'watcher sees the apply');
      const ip = w.current().services.get('default/reviews')?.spec.clusterIP;
      assert.match(ip ?? '', /^10\.96\./);

      // get -o yaml applies back unchanged; so does -o json (a List).
      const y = await cli('get', '-o', 'yaml');
      assert.equal(y.code, 0, y.stderr);
      assert.match(y.stdout, new RegExp(`clusterIP: ${ip!.replace(/\./g, '\\.')}`));
      const again = await cli('apply', '-f', write('got.yaml', y.stdout));
      assert.equal(again.stdout, 'service/reviews unchanged\ntrafficpolicy/reviews unchanged\n', again.stderr);
      const j = await cli('get', '-o', 'json');
      assert.equal(JSON.parse(j.stdout).kind, 'List');
      const againJson = await cli('apply', '-f', write('got.json', j.stdout));
      assert.equal(againJson.stdout, 'service/reviews unchanged\ntrafficpolicy/reviews unchanged\n', againJson.stderr);
      const one = await cli('get', 'tp', 'reviews', '-o', 'json');
      assert.equal(JSON.parse(one.stdout).spec.service, 'reviews');
      const table = await cli('get');
      assert.match(table.stdout, /Service\s+default\s+reviews\s+ClusterIP/);

      // dry run of a change: a diff, nothing written.
      const changed = write('reviews.yaml', split(80, 20));
      const dry = await cli('apply', '-f', changed, '--dry-run');
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /trafficpolicy\/reviews configured \(dry run\)/);
      assert.match(dry.stdout, /- +weight: 90\n.*\+ +weight: 80/s);
      const afterDry = await cli('get', 'tp', 'reviews', '-o', 'yaml');
      assert.match(afterDry.stdout, /weight: 90/);

      // change: configured, in force through the watch.
      const a2 = await cli('apply', '-f', changed);
      assert.equal(a2.stdout, 'service/reviews unchanged\ntrafficpolicy/reviews configured\n', a2.stderr);
      await eventually(() => weights()?.[0] === 80, 10_000, 'watcher sees the change');

      // all-or-nothing: a file whose second document is bad changes nothing.
      const tpKey = '/meshwork/policies/TrafficPolicy/default/reviews';
      const modBefore = (await store.get(tpKey))?.modRevision;
      assert.ok(modBefore);
      const mixed = write('mixed.yaml', split(70, 30).replace('steps: [10, 25, 50, 100]', 'steps: [10, 50, 25, 100]'));
      const a3 = await cli('apply', '-f', mixed);
      assert.equal(a3.code, 1);
      assert.match(a3.stderr, /^meshwork: 1 error in policy documents:\n {2}.*mixed.yaml:\d+:\d+: spec.canary.steps\[2\]: steps must ascend: 25 follows 50\n$/);
      assert.equal(a3.stdout, '');
      const check = await cli('get', 'tp', 'reviews', '-o', 'yaml');
      assert.match(check.stdout, /weight: 80/);
      assert.equal((await store.get(tpKey))?.modRevision, modBefore, 'the policy was not rewritten');
      assert.equal((await store.list('/meshwork/clusterips/')).items.length, 1);

      // delete: the service alone is refused; both together through -f succeed.
      const d1 = await cli('delete', 'svc', 'reviews');
      assert.equal(d1.code, 1);
      assert.match(d1.stderr, /governed by TrafficPolicy reviews/);
      const d2 = await cli('delete', '-f', changed);
      assert.equal(d2.code, 0, d2.stderr);
      assert.equal(d2.stdout, 'service/reviews deleted\ntrafficpolicy/reviews deleted\n');
      await eventually(() => w.current().services.size === 0 && w.current().trafficPolicies.size === 0, 10_000, 'watcher sees the delete');
      assert.deepEqual((await store.list('/meshwork/clusterips/')).items, []);
      const d3 = await cli('delete', 'tp', 'reviews');
      assert.equal(d3.code, 1);
      assert.match(d3.stderr, /^meshwork: trafficpolicy\/reviews in namespace default not found\n$/);
    } finally {
      await watcher?.stop();
      await store?.close();
      await env.teardown();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test('policy get -A -o yaml of every example equals the stored model and applies back unchanged', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-policy-rt-'));
  const env = { ...process.env, MESHWORK_STORE: `file:${dir}/store` };
  const cli = (...args: string[]) => run(process.execPath, [BIN, 'policy', ...args], { env });
  try {
    const applied = await cli('apply', '-f', examplesDir);
    assert.equal(applied.code, 0, applied.stderr);
    const got = await cli('get', '-A', '-o', 'yaml');
    assert.equal(got.code, 0, got.stderr);
    const printed = loadPolicies([{ file: 'get.yaml', text: got.stdout }], { checkReferences: false });
    assert.deepEqual(printed.issues, []);
    const store = await openStore(env.MESHWORK_STORE);
    try {
      const stored = await readStored(store);
      assert.equal(stored.docs.size, 14);
      const byKey = new Map(printed.documents.map((d) => [keyOf(d.document), d.document]));
      for (const [key, { doc }] of stored.docs) assert.deepEqual(byKey.get(key), doc, key);
    } finally { await store.close(); }
    const again = await cli('apply', '-f', writeTo(dir, 'get.yaml', got.stdout));
    assert.equal(again.code, 0, again.stderr);
    const lines = again.stdout.trim().split('\n');
    assert.equal(lines.length, 14);
    assert.deepEqual(lines.filter((l) => !l.endsWith(' unchanged')), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function writeTo(dir: string, name: string, text: string): string { const f = path.join(dir, name); fs.writeFileSync(f, text); return f; }

test('meshwork policy reports bad arguments without a stack trace', async () => {
  const env = { ...process.env, MESHWORK_STORE: 'memory:' };
  const cases: Array<[string[], RegExp]> = [
    [['validate', '/nonexistent/p.yaml'], /^meshwork: \/nonexistent\/p.yaml: no such file or directory\n$/],
    [['get', 'pods'], /unknown kind "pods"; expected service \(svc\) or trafficpolicy \(tp\)/],
    [['get', 'svc', '-o', 'xml'], /unknown output format "xml"/],
    [['delete'], /what to delete/],
  ];
  for (const [args, want] of cases) {
    const r = await run(process.execPath, [BIN, 'policy', ...args], { env });
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});
