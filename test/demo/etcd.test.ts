/**
 * `meshwork demo --store etcd:…`: the cluster runs on a real etcd (reached
 * from inside the namespaces through the demo's relay), keeps its documents
 * in its own namespace and network, and deletes them on the way out while a
 * document of someone else in the same etcd stays.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isRoot, NEEDS_ROOT, repoRoot, sh } from '../helpers/lab';
import { EtcdCluster, haveEtcd, NEEDS_ETCD } from '../helpers/etcd';
import { openStore } from '../../store/open';
import { leftovers, nothing, startDemo, type DemoEvent } from './harness';

const servingFrontend = (e: DemoEvent) => e.type === 'stats' && (e.rows ?? []).some((r: { service: string; rps: number; successPercent: number | null }) => r.service === 'frontend' && r.rps > 0 && r.successPercent === 100);

test('meshwork demo --store etcd: serves traffic over etcd and removes only its own keys', { skip: (!isRoot && NEEDS_ROOT) || (!haveEtcd && NEEDS_ETCD), timeout: 300_000 }, async () => {
  const etcd = await EtcdCluster.start(1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mwdemo-etcd-'));
  const store = await openStore(etcd.spec);
  let id = '';
  const demo = startDemo(dir, 'etcd', ['--no-story', '--hosts', '2', '--rate', '5', '--store', etcd.spec]);
  try {
    const other = path.join(dir, 'other.yaml');
    fs.writeFileSync(other, 'apiVersion: meshwork.dev/v1\nkind: Service\nmetadata:\n  name: someone-elses\nspec:\n  selector: { app: x }\n  ports: [{ port: 80 }]\n');
    sh(process.execPath, [path.join(repoRoot, 'bin', 'meshwork'), 'policy', 'apply', '-f', other, '--store', etcd.spec]);
    id = (await demo.waitFor((e) => e.type === 'run', 30_000, 'run')).id;
    await demo.waitFor((e) => e.type === 'ready', 180_000, 'ready');
    await demo.waitFor(servingFrontend, 60_000, 'traffic through the mesh');
    // Everything the run wrote is under its own namespace, network and node names.
    const all = (await store.list('/meshwork/')).items.map((kv) => kv.key);
    assert.ok(all.includes(`/meshwork/policies/TrafficPolicy/${id}/reviews`), all.join('\n'));
    assert.ok(all.some((k) => k.startsWith(`/meshwork/endpoints/${id}/`)));
    assert.ok(all.some((k) => k.startsWith(`/meshwork/nodes/${id}-h1`)));

    demo.child.kill('SIGINT');
    const exit = await demo.exited();
    assert.equal(exit.code, 0, demo.output().slice(-2000));
    const items = (await store.list('/meshwork/')).items;
    const rest = items.map((kv) => kv.key);
    assert.deepEqual(items.filter((kv) => kv.key.includes(id) || kv.value.includes(id)).map((kv) => kv.key), [], 'no key of the run (cluster IPs included) is left');
    assert.ok(rest.includes('/meshwork/policies/Service/default/someone-elses'), 'a document of someone else stays');
    assert.deepEqual(leftovers(id), nothing);
  } finally {
    if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL');
    if (id) sh(process.execPath, [path.join(repoRoot, 'bin', 'meshwork'), 'demo', '--down', id], { allowFail: true, timeoutMs: 120_000 });
    await store.close();
    await etcd.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
