import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryStore } from '../../store/memory';
import { keys } from '../../store/keys';
import { createClusterView, createReplicaView } from '../../dns/cluster-view';
import { buildIndex } from '../../dns/cluster-index';
import { eventually } from '../helpers/lab';
import { endpoints, ep, services, svc } from './fixtures';

test('index: headless targets are the ready endpoints of the namespace that match the selector', () => {
  const idx = buildIndex({ services, endpoints });
  const db = idx.services.get('db.team-a')!;
  assert.equal(db.kind, 'headless');
  assert.deepEqual(db.targets, [{ hostname: 'db-0', ips: ['10.1.0.5', 'fd00:1::5'] }, { hostname: '10-1-0-6', ips: ['10.1.0.6'] }]);
  assert.deepEqual(idx.services.get('empty.team-a')!.targets, []);
  assert.deepEqual(idx.services.get('web.team-a')!.clusterIps, ['10.96.0.10', 'fd00:96::10']);
  assert.deepEqual(idx.services.get('web.team-a')!.ports, [{ name: 'http', port: 80, protocol: 'tcp' }]);
  assert.deepEqual(idx.reverse.get('5.0.1.10.in-addr.arpa'), ['db-0.db.team-a.svc']);
  assert.deepEqual(idx.reverse.get('10.0.96.10.in-addr.arpa'), ['web.team-a.svc']);
  assert.deepEqual(idx.containers.get('net1')!.get('frontend'), ['10.1.0.11', '10.1.0.12']);
  assert.deepEqual(idx.networksByIp.get('10.2.0.5'), ['net2']);
});

test('index: two endpoints claiming one hostname both stay reachable', () => {
  const idx = buildIndex({
    services: [svc('h', 'team-a', { selector: { app: 'h' }, clusterIP: 'None' })],
    endpoints: [ep('a', { hostname: 'same', ips: ['10.0.0.1'], labels: { app: 'h' } }), ep('b', { hostname: 'same', ips: ['10.0.0.2'], labels: { app: 'h' } })],
  });
  assert.deepEqual(idx.services.get('h.team-a')!.targets.map((t) => t.hostname), ['same', '10-0-0-2']);
});

test('cluster view lists, then follows the store; bad records are skipped', async () => {
  const store = createMemoryStore();
  const warnings: string[] = [];
  await store.put(keys.policy('Service', 'team-a', 'web'), JSON.stringify(services[0]));
  await store.put(keys.endpoint('net1', 'w1', 'eth0'), JSON.stringify(endpoints[4]));
  await store.put(keys.policy('Service', 'team-a', 'broken'), '{"kind":"Service","metadata":{}}');
  const view = createClusterView({ store, logger: { warn: (m) => warnings.push(m) } });
  try {
    await view.start();
    assert.ok(view.current().services.has('web.team-a'));
    assert.ok(!view.current().services.has('broken.team-a'));
    assert.match(warnings.join('\n'), /broken: metadata.name\/namespace missing/);
    let changes = 0;
    view.onChange(() => changes++);
    await store.put(keys.policy('Service', 'team-a', 'db'), JSON.stringify(services[1]));
    await store.put(keys.endpoint('net1', 'c1', 'eth0'), JSON.stringify(endpoints[0]));
    await eventually(() => view.current().services.get('db.team-a')?.targets.length === 1, 1000, 'db endpoint in view');
    await store.put(keys.endpoint('net1', 'c1', 'eth0'), JSON.stringify({ ...endpoints[0], ready: false }));
    await eventually(() => view.current().services.get('db.team-a')?.targets.length === 0, 1000, 'endpoint not ready');
    await store.delete(keys.policy('Service', 'team-a', 'web'));
    await eventually(() => !view.current().services.has('web.team-a'), 1000, 'service gone');
    assert.ok(changes >= 1);
    assert.ok(view.data().endpoints.length === 2);
  } finally {
    await view.stop();
    await store.close();
  }
});

test('replica view swaps whole snapshots', () => {
  const v = createReplicaView();
  assert.equal(v.current().services.size, 0);
  const g = v.generation;
  v.apply({ services, endpoints });
  assert.equal(v.generation, g + 1);
  assert.equal(v.current().services.size, services.length);
});

type MemoryStore = ReturnType<typeof createMemoryStore>;

/**
 * Wraps a store so a test can break its watches the way a compacted or lost
 * etcd watch breaks (`breakers[i]`), and make its next listings fail (`failLists`).
 */
function breakable(store: MemoryStore): { store: MemoryStore; breakers: Array<(err: Error) => void>; failLists: { n: number } } {
  const breakers: Array<(err: Error) => void> = [];
  const failLists = { n: 0 };
  const wrapped = {
    ...store,
    list: (prefix: string) => (failLists.n-- > 0 ? Promise.reject(new Error('store unavailable')) : store.list(prefix)),
    watch: (prefix: string, onEvent: Parameters<MemoryStore['watch']>[1], opts?: Parameters<MemoryStore['watch']>[2]) => {
      let live = true;
      // A broken watch delivers nothing more, like one whose history was compacted away.
      breakers.push((err) => { live = false; opts?.onError?.(err); });
      return store.watch(prefix, (ev) => { if (live) onEvent(ev); }, opts);
    },
  };
  return { store: wrapped as MemoryStore, breakers, failLists };
}

test('a watch that cannot resume (compacted history) makes the view list again', async () => {
  const store = createMemoryStore();
  const { store: wrapped, breakers } = breakable(store);
  const warnings: string[] = [];
  const view = createClusterView({ store: wrapped, logger: { warn: (m) => warnings.push(m) } });
  try {
    await view.start();
    assert.equal(breakers.length, 2);
    // The watch breaks, then a write lands: only a fresh listing (and a new watch) can find it.
    breakers[0](new Error('required revision has been compacted'));
    await store.put(keys.policy('Service', 'team-a', 'web'), JSON.stringify(services[0]));
    await eventually(() => view.current().services.has('web.team-a'), 2000, 'service found by the re-list');
    assert.match(warnings.join('\n'), /compacted.*re-listing/);
  } finally {
    await view.stop();
    await store.close();
  }
});

test('a re-list that fails (store down) is retried until it works', async () => {
  const store = createMemoryStore();
  const { store: wrapped, breakers, failLists } = breakable(store);
  const warnings: string[] = [];
  const view = createClusterView({ store: wrapped, logger: { warn: (m) => warnings.push(m) } });
  try {
    await view.start();
    // The watch breaks while the store is down: the next three listings fail.
    failLists.n = 3;
    breakers[0](new Error('watch stream closed'));
    await store.put(keys.policy('Service', 'team-a', 'web'), JSON.stringify(services[0]));
    await eventually(() => view.current().services.has('web.team-a'), 10_000, 'service found once the store answers again');
    assert.equal(warnings.filter((w) => /re-list .* failed/.test(w)).length, 3, warnings.join('\n'));
  } finally {
    await view.stop();
    await store.close();
  }
});
