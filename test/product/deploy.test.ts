import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import YAML from 'yaml';
import { Registry } from 'prom-client';
import { parseNetConf } from '../../cni/config';
import { loadOverlayConfig } from '../../cni/drivers/overlay';
import { createAgentMetrics } from '../../agent/metrics';
import { createDnsMetrics } from '../../dns/metrics';
import { createMetrics as createSidecarMetrics } from '../../sidecar/metrics';
import { createCanaryMetrics } from '../../canary/metrics';
import { run, repoRoot } from '../helpers/lab';

const CLI = path.join(repoRoot, 'bin', 'meshwork');
const MANIFEST = path.join(repoRoot, 'deploy', 'meshwork.yaml');

function docs(): any[] {
  const all = YAML.parseAllDocuments(fs.readFileSync(MANIFEST, 'utf8'));
  for (const d of all) assert.deepEqual(d.errors.map(String), [], 'valid YAML');
  return all.map((d) => d.toJS());
}

test('deploy/meshwork.yaml: valid YAML with the DaemonSet, its RBAC and store settings wired together', () => {
  const all = docs();
  const byKind = (k: string) => all.filter((d) => d.kind === k);
  assert.deepEqual(all.map((d) => d.kind), ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet']);
  for (const d of all) assert.ok(d.apiVersion && d.metadata?.name, `${d.kind} has apiVersion and name`);
  const ns = byKind('Namespace')[0].metadata.name;
  const sa = byKind('ServiceAccount')[0];
  const role = byKind('ClusterRole')[0];
  const binding = byKind('ClusterRoleBinding')[0];
  const cm = byKind('ConfigMap')[0];
  const ds = byKind('DaemonSet')[0];
  assert.equal(sa.metadata.namespace, ns);
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: ns }]);
  const core = role.rules.find((r: any) => r.apiGroups.includes(''));
  for (const res of ['nodes', 'pods', 'services']) assert.ok(core.resources.includes(res), `reads ${res}`);
  for (const r of role.rules) assert.deepEqual(r.verbs, ['get', 'list', 'watch'], 'read-only');
  const spec = ds.spec.template.spec;
  assert.deepEqual(ds.spec.selector.matchLabels, Object.fromEntries(Object.entries(ds.spec.template.metadata.labels).filter(([k]) => k in ds.spec.selector.matchLabels)));
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.serviceAccountName, sa.metadata.name);
  assert.equal(spec.initContainers[0].securityContext.privileged, true);
  // Every volume mount names a declared volume; every configMap ref names our ConfigMap and an existing key.
  const volumes = new Set(spec.volumes.map((v: any) => v.name));
  for (const c of [...spec.initContainers, ...spec.containers]) for (const m of c.volumeMounts) assert.ok(volumes.has(m.name), `${c.name} mounts ${m.name}`);
  for (const e of spec.containers[0].env.filter((x: any) => x.valueFrom?.configMapKeyRef)) {
    assert.equal(e.valueFrom.configMapKeyRef.name, cm.metadata.name);
    assert.ok(e.valueFrom.configMapKeyRef.key in cm.data, `ConfigMap has ${e.valueFrom.configMapKeyRef.key}`);
  }
  assert.match(cm.data.store, /^etcd:http:\/\//);
});

test('deploy/meshwork.yaml: the conflist is accepted by the plugin, the init and agent commands by the CLI', async () => {
  const all = docs();
  const cm = all.find((d) => d.kind === 'ConfigMap');
  const ds = all.find((d) => d.kind === 'DaemonSet').spec.template.spec;
  const conflist = JSON.parse(cm.data['10-meshwork.conflist']);
  assert.equal(conflist.name, cm.data.network);
  for (const plugin of conflist.plugins) {
    const { conf } = parseNetConf({ cniVersion: conflist.cniVersion, name: conflist.name, ...plugin });
    assert.equal(conf.driver, 'overlay');
    // The plugin's endpoint records go where the agent, DNS and sidecars read (its default is the host's file store).
    assert.equal(plugin.store, cm.data.store, 'the conflist names the agent\'s store');
    loadOverlayConfig(conf);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-deploy-'));
  try {
    // The init container's `meshwork install ...` with the host paths redirected into a temp dir.
    fs.writeFileSync(path.join(tmp, 'conf'), cm.data['10-meshwork.conflist']);
    const script: string = ds.initContainers[0].args[0];
    const args = script.slice(script.indexOf('bin/meshwork install') + 'bin/meshwork '.length).replace(/\\\n/g, ' ').trim().split(/\s+/)
      .map((a) => (a === '/host' ? tmp : a === '/config/10-meshwork.conflist' ? path.join(tmp, 'conf') : a));
    const r = await run(process.execPath, [CLI, ...args, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /MESHWORK_NODE='\/opt\/meshwork\/node' exec '\/opt\/meshwork\/bin\/meshwork-cni' "\$@"/);
    assert.doesNotMatch(r.stdout, /meshwork-agent\.service/);
    // The agent container's flags all exist.
    const help = await run(process.execPath, [CLI, 'agent', '--help']);
    for (const a of ds.containers[0].args as string[]) {
      const flag = a.split('=')[0];
      assert.ok(help.stdout.includes(flag), `meshwork agent knows ${flag}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('deploy/grafana/meshwork.json: a Grafana dashboard over metric names the components really export', async () => {
  const dash = JSON.parse(fs.readFileSync(path.join(repoRoot, 'deploy', 'grafana', 'meshwork.json'), 'utf8'));
  assert.equal(dash.uid, 'meshwork-overview');
  const ids = dash.panels.map((p: any) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
  const titles = dash.panels.filter((p: any) => p.type === 'row').map((p: any) => p.title);
  assert.deepEqual(titles, ['Service graph', 'Service $service', 'Canary rollouts', 'Network and DNS']);
  const known = new Set<string>();
  const agent = new Registry();
  const dns = new Registry();
  createAgentMetrics(agent);
  createDnsMetrics(dns);
  const registries = [agent, dns, createSidecarMetrics({ workload: 'w', namespace: 'n' }, { defaultMetrics: false }).registry, createCanaryMetrics().registry];
  for (const r of registries) for (const m of await r.getMetricsAsJSON()) known.add(m.name);
  const used = new Set<string>();
  for (const p of dash.panels) for (const t of p.targets ?? []) for (const m of String(t.expr).matchAll(/meshwork_[a-z0-9_]+/g)) used.add(m[0].replace(/_(bucket|sum|count)$/, ''));
  const unknown = [...used].filter((n) => !known.has(n));
  assert.deepEqual(unknown, [], 'every metric the dashboard queries exists');
  for (const n of ['meshwork_requests_total', 'meshwork_request_duration_seconds', 'meshwork_canary_weight', 'meshwork_circuit_breaker_state', 'meshwork_dns_queries_total']) assert.ok(used.has(n), `dashboard shows ${n}`);
});

test('canary/README.md: its TrafficPolicy example loads and declares the canary it describes', async () => {
  const { loadPolicies } = await import('../../policies/load');
  const file = path.join(repoRoot, 'canary', 'README.md');
  const blocks = [...fs.readFileSync(file, 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.equal(blocks.length, 1);
  const r = loadPolicies([{ file, text: blocks[0] }], { checkReferences: false });
  assert.deepEqual(r.issues, []);
  const tp = r.documents[0].document;
  assert.equal(tp.kind, 'TrafficPolicy');
  assert.deepEqual(tp.kind === 'TrafficPolicy' && tp.spec.canary, {
    subset: 'v2', stableSubset: 'v1', route: 'default', steps: [10, 25, 50, 100], intervalMs: 60_000, minSuccessRatePercent: 99, maxP99LatencyMs: 500,
  });
});
