/** The controller against a memory store and a recording nft runner: watch, coalescing, idempotence, retries, stop. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { eventually } from '../helpers/lab';
import { createMemoryStore } from '../../store/memory';
import { keys } from '../../store/keys';
import type { Store } from '../../store/types';
import { createServiceVips, ServiceVipsError } from '../../agent/service-vips-controller';
import type { Logger } from '../../agent/logger';
import { epChain } from '../../agent/service-vips-render';
import type { VipEntry } from '../../agent/service-vips-model';
import { ConntrackError } from '../../agent/service-vips-conntrack';

const service = (name: string, ip: string, extra: Record<string, unknown> = {}) => JSON.stringify({
  kind: 'Service', metadata: { name, namespace: 'prod', labels: {} },
  spec: { type: 'ClusterIP', selector: { app: name }, ports: [{ port: 80, protocol: 'TCP', targetPort: 8080 }], clusterIP: ip, ...extra },
});
const endpoint = (id: string, ip: string, app: string, ready = true) => JSON.stringify({
  network: 'mesh', containerId: id, ifname: 'eth0', namespace: 'prod', pod: id, node: 'n1', ips: [ip], labels: { app }, ready,
});
const putEp = (s: Store, id: string, ip: string, app: string, ready = true) => s.put(keys.endpoint('mesh', id, 'eth0'), endpoint(id, ip, app, ready));

function recorder(failTimes = 0) {
  const scripts: string[] = [];
  let fails = failTimes;
  return {
    scripts,
    last: () => scripts[scripts.length - 1] ?? '',
    nft: async (script: string) => {
      if (fails > 0) { fails--; throw new Error('nft: Could not process rule: No such file or directory'); }
      scripts.push(script);
    },
  };
}

function memLogger() {
  const lines: string[] = [];
  const rec = (level: string) => (msg: string, f?: Record<string, unknown>) => lines.push(`${level} ${msg} ${JSON.stringify(f ?? {})}`);
  const logger: Logger = { debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') };
  return { lines, logger };
}

test('follows the store: a full sync on start, then only the differences; unchanged state runs no nft', async () => {
  const store = createMemoryStore();
  const r = recorder();
  await store.put(keys.policy('Service', 'prod', 'web'), service('web', '10.96.0.10'));
  await store.put(keys.policy('Service', 'prod', 'headless'), service('headless', 'None'));
  await putEp(store, 'a', '10.1.0.2', 'web');
  const registry = new Registry();
  const vips = createServiceVips({ store, nft: r.nft, registry, sameLinkMasquerade: false });
  try {
    await vips.start();
    assert.equal(r.scripts.length, 1);
    assert.match(r.last(), /dnat ip to 10\.1\.0\.2:8080/);
    assert.doesNotMatch(r.last(), /None/);

    assert.equal((await vips.reconcileNow()).applied, false);
    assert.equal(r.scripts.length, 1, 'no nft run for an unchanged ruleset');
    assert.equal((await vips.reconcileNow({ force: true })).applied, true);
    assert.equal(r.scripts.length, 2);

    await putEp(store, 'b', '10.1.0.3', 'web');
    await eventually(() => r.last().includes('10.1.0.3:8080'), 1000, 'new endpoint programmed');
    assert.doesNotMatch(r.last(), /delete table/, 'a partial sync, not a replace');
    assert.doesNotMatch(r.last(), /10\.1\.0\.2/, 'the unchanged endpoint chain is left alone');
    assert.match(r.last(), /numgen random mod 2/);

    await putEp(store, 'a', '10.1.0.2', 'web', false);
    const webA = epChain({ id: 'prod/web:80/tcp' } as VipEntry, { ip: '10.1.0.2', port: 8080 });
    await eventually(() => r.last().includes(`delete chain inet meshwork-svc ${webA}`), 1000, 'not-ready endpoint gone');
    assert.doesNotMatch(r.last(), /numgen/, 'one endpoint left: a plain goto');

    await store.delete(keys.endpoint('mesh', 'b', 'eth0'));
    await eventually(() => /10\.96\.0\.10 \. tcp \. 80 : goto reject-no-endpoints/.test(r.last()), 1000, 'service without endpoints rejects');

    const text = await registry.metrics();
    assert.match(text, /^meshwork_vips_services 1$/m);
    assert.match(text, /^meshwork_vips_endpoints 0$/m);
    assert.match(text, /^meshwork_vips_ports_without_endpoints 1$/m);
    assert.match(text, /^meshwork_vips_sync_errors_total 0$/m);
    const syncs = Number(/^meshwork_vips_sync_total (\d+)$/m.exec(text)![1]);
    assert.ok(syncs >= 6, `passes counted: ${syncs}`);
  } finally {
    await vips.stop();
    await store.close();
  }
  assert.match(r.last(), /^table inet meshwork-svc \{\}\ndelete table inet meshwork-svc\n$/, 'stop removes the table');
});

test('a burst of changes becomes few nft runs', async () => {
  const store = createMemoryStore();
  const r = recorder();
  await store.put(keys.policy('Service', 'prod', 'web'), service('web', '10.96.0.10'));
  const vips = createServiceVips({ store, nft: r.nft, sameLinkMasquerade: false, debounceMs: 20 });
  try {
    await vips.start();
    await Promise.all(Array.from({ length: 100 }, (_, i) => putEp(store, `p${i}`, `10.1.${i >> 8}.${(i & 255) + 1}`, 'web')));
    await eventually(() => r.last().includes('numgen random mod 100 '), 2000, 'all 100 endpoints programmed');
    assert.ok(r.scripts.length < 20, `${r.scripts.length} nft runs for 100 writes`);
  } finally {
    await vips.stop();
    await store.close();
  }
});

test('a malformed record is skipped and reported once; the rest is still programmed', async () => {
  const store = createMemoryStore();
  const r = recorder();
  const { lines, logger } = memLogger();
  await store.put(keys.policy('Service', 'prod', 'web'), service('web', '10.96.0.10'));
  await store.put(keys.policy('Service', 'prod', 'evil'), service('evil', '10.96.0.11; flush ruleset'));
  await store.put(keys.endpoint('mesh', 'junk', 'eth0'), '{"namespace":"prod"');
  await putEp(store, 'a', '10.1.0.2', 'web');
  const vips = createServiceVips({ store, nft: r.nft, logger, sameLinkMasquerade: false });
  try {
    await vips.start();
    assert.match(r.last(), /dnat ip to 10\.1\.0\.2:8080/);
    assert.doesNotMatch(r.last(), /flush ruleset|10\.96\.0\.11/);
    const warns = lines.filter((l) => l.startsWith('warn vips: skipping record'));
    assert.equal(warns.length, 2, lines.join('\n'));
    assert.match(warns.join('\n'), /Service\/prod\/evil: spec\.clusterIP .* is not an IP address/);
    // Fixing the record brings the service in.
    await store.put(keys.policy('Service', 'prod', 'evil'), service('evil', '10.96.0.11'));
    await eventually(() => r.last().includes('10.96.0.11 . tcp . 80'), 1000, 'fixed service programmed');
  } finally {
    await vips.stop();
    await store.close();
  }
});

test('nft failures are counted and retried until the table is in', async () => {
  const store = createMemoryStore();
  const r = recorder(0);
  const registry = new Registry();
  const { lines, logger } = memLogger();
  await store.put(keys.policy('Service', 'prod', 'web'), service('web', '10.96.0.10'));
  let failNext = 0;
  const nft = async (s: string) => { if (failNext > 0) { failNext--; throw new Error('nft rejected the ruleset'); } return r.nft(s); };
  const vips = createServiceVips({ store, nft, registry, logger, sameLinkMasquerade: false });
  try {
    await vips.start();
    failNext = 2;
    await putEp(store, 'a', '10.1.0.2', 'web');
    await eventually(() => r.last().includes('10.1.0.2:8080'), 5000, 'applied after retries');
    assert.match(r.last(), /^table inet meshwork-svc \{\}\ndelete table inet meshwork-svc\n/, 'after a failure the whole table is replaced');
    assert.match(await registry.metrics(), /^meshwork_vips_sync_errors_total 2$/m);
    assert.equal(lines.filter((l) => l.startsWith('error vips: sync failed')).length, 2);
  } finally {
    await vips.stop();
    await store.close();
  }
});

test('start fails clearly when nft cannot apply, and leaves nothing running', async () => {
  const store = createMemoryStore();
  const vips = createServiceVips({ store, nft: async () => { throw new Error('spawn nft ENOENT'); }, sameLinkMasquerade: false });
  await assert.rejects(vips.start(), (e: unknown) => e instanceof Error && (e as ServiceVipsError).code === 'EVIPS' && /service VIPs: start: .*sync of table meshwork-svc failed: spawn nft ENOENT/.test(e.message));
  await vips.stop();
  await assert.rejects(vips.reconcileNow(), /stopped/);
  await store.close();
});

test('UDP endpoints that leave get their conntrack entries cleared; a missing conntrack tool is reported once', async () => {
  const store = createMemoryStore();
  const r = recorder();
  const { lines, logger } = memLogger();
  const flushed: string[] = [];
  const conntrack = async (flows: Array<{ vip: string; port: number; backend: string }>) => {
    flushed.push(...flows.map((f) => `${f.vip}:${f.port}->${f.backend}`));
    throw new ConntrackError('cannot run conntrack: spawn conntrack ENOENT', true);
  };
  await store.put(keys.policy('Service', 'prod', 'dns'), service('dns', '10.96.0.53', { ports: [{ port: 53, protocol: 'UDP', targetPort: 5353 }] }));
  await putEp(store, 'a', '10.1.0.2', 'dns');
  await putEp(store, 'b', '10.1.0.3', 'dns');
  const vips = createServiceVips({ store, nft: r.nft, conntrack, logger, sameLinkMasquerade: false });
  try {
    await vips.start();
    await store.delete(keys.endpoint('mesh', 'a', 'eth0'));
    await eventually(() => flushed.length === 1, 1000, 'flush of the removed endpoint');
    assert.deepEqual(flushed, ['10.96.0.53:53->10.1.0.2']);
    await store.delete(keys.endpoint('mesh', 'b', 'eth0'));
    await eventually(() => flushed.length === 2, 1000, 'second flush');
    assert.equal(lines.filter((l) => l.includes('conntrack not installed')).length, 1, lines.join('\n'));
  } finally {
    await vips.stop();
    await store.close();
  }
});

test('stop keeping the table (a restart) stops watching and runs no nft', async () => {
  const store = createMemoryStore();
  const r = recorder();
  await store.put(keys.policy('Service', 'prod', 'web'), service('web', '10.96.0.10'));
  const vips = createServiceVips({ store, nft: r.nft, sameLinkMasquerade: false });
  try {
    await vips.start();
    await vips.stop({ keepTable: true });
    assert.equal(r.scripts.length, 1, 'only the start-up sync; no delete');
    await putEp(store, 'a', '10.1.0.2', 'web');
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(r.scripts.length, 1, 'no more passes after stop');
  } finally {
    await store.close();
  }
});

test('options are checked when the controller is made', () => {
  const store = createMemoryStore();
  assert.throws(() => createServiceVips({ store, table: 'x y' }), /table name/);
  assert.throws(() => createServiceVips({ store, masqueradeMark: 0x3 }), /single bit/);
  void store.close();
});
