/** Table tests of the cluster fields (cni/cluster-config.ts), the DNS merge and the store pool. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as os from 'node:os';
import { parseNetConf } from '../../cni/config';
import { parseClusterConf, DEFAULT_STORE } from '../../cni/cluster-config';
import { mergeDns, dnsLayer } from '../../cni/dns-layer';
import { createStorePool } from '../../cni/store-pool';
import { Transaction } from '../../cni/drivers/driver';
import { CniError } from '../../cni/types';
import type { Store } from '../../store/types';
import type { LayerContext } from '../../cni/layers';

const base = { cniVersion: '1.0.0', name: 'net1', type: 'meshwork-cni' };
const cluster = (extra: Record<string, unknown>, args: Record<string, string> = {}, id = 'c1') =>
  parseClusterConf(parseNetConf({ ...base, ...extra }).conf, id, args);

test('defaults: file store, host name as node, namespace default, container ID as pod, no mesh', () => {
  const c = cluster({});
  assert.deepEqual(c, { store: DEFAULT_STORE, node: os.hostname(), podNamespace: 'default', pod: 'c1', labels: {}, aliases: [] });
});

test('pod identity from CNI_ARGS, labels from runtimeConfig and args.cni (args win), names', () => {
  const c = cluster({
    store: 'etcd:http://127.0.0.1:2379', node: 'n1',
    runtimeConfig: { labels: { app: 'web', version: 'v1' }, hostname: 'web-1', aliases: ['web'] },
    args: { cni: { labels: [{ key: 'version', value: 'v2' }, { key: 'tier', value: 'front' }], aliases: ['www', 'web.shop'] } },
  }, { K8S_POD_NAMESPACE: 'shop', K8S_POD_NAME: 'web-1', IgnoreUnknown: '1' });
  assert.equal(c.store, 'etcd:http://127.0.0.1:2379');
  assert.equal(c.node, 'n1');
  assert.equal(c.podNamespace, 'shop');
  assert.equal(c.pod, 'web-1');
  assert.deepEqual(c.labels, { app: 'web', version: 'v2', tier: 'front' });
  assert.equal(c.hostname, 'web-1');
  assert.deepEqual(c.aliases, ['www', 'web.shop']);
});

test('mesh: true gives the sidecar defaults; objects set options; the most specific source wins', () => {
  assert.deepEqual(cluster({ mesh: true }).mesh, { outboundPort: 15001, inboundPort: 15006, excludeInboundPorts: [15090], excludeOutboundPorts: [], excludeOutboundCidrs: [] });
  const m = cluster({ mesh: { outboundPort: 16001, inboundPort: 16006, sidecarGid: 2000, excludeOutboundPorts: [5432], excludeOutboundCidrs: ['10.0.0.0/8', 'fd00::/8'], includeInboundPorts: [80] } }).mesh!;
  assert.equal(m.outboundPort, 16001);
  assert.equal(m.sidecarGid, 2000);
  assert.deepEqual(m.excludeOutboundCidrs, ['10.0.0.0/8', 'fd00::/8']);
  assert.deepEqual(m.includeInboundPorts, [80]);
  assert.equal(cluster({ mesh: true, runtimeConfig: { mesh: false } }).mesh, undefined);
  assert.ok(cluster({ runtimeConfig: { mesh: false }, args: { cni: { mesh: true } } }).mesh);
  assert.equal(cluster({ mesh: { enabled: false } }).mesh, undefined);
});

test('clusterDNS: server and zone (default cluster.local)', () => {
  assert.deepEqual(cluster({ clusterDNS: { server: '10.96.0.10' } }).clusterDNS, { server: '10.96.0.10', zone: 'cluster.local' });
  assert.deepEqual(cluster({ clusterDNS: { server: 'fd00::a', zone: 'corp.example.' } }).clusterDNS, { server: 'fd00::a', zone: 'corp.example' });
});

test('bad cluster fields: code 7 naming the field', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ store: 5 }, /^store:/],
    [{ store: '' }, /^store:/],
    [{ node: 'a/b' }, /^node:/],
    [{ mesh: 'yes' }, /^mesh:/],
    [{ mesh: { outboundPort: 0 } }, /^mesh\.outboundPort:/],
    [{ mesh: { outboundPort: 15006 } }, /^mesh\.inboundPort: must differ/],
    [{ mesh: { excludeOutboundCidrs: ['10.0.0.0/33'] } }, /^mesh\.excludeOutboundCidrs\[0\]:/],
    [{ mesh: { excludeOutboundPorts: [1, 'x'] } }, /^mesh\.excludeOutboundPorts:/],
    [{ mesh: { outbound: 1 } }, /^mesh\.outbound: unknown sidecar option/],
    [{ runtimeConfig: { mesh: 3 } }, /^runtimeConfig\.mesh:/],
    [{ runtimeConfig: { labels: { a: 1 } } }, /^runtimeConfig\.labels\.a:/],
    [{ runtimeConfig: { labels: 'a=b' } }, /^runtimeConfig\.labels:/],
    [{ args: { cni: { labels: [{ key: 'a' }] } } }, /^args\.cni\.labels\[0\]:/],
    [{ args: { cni: 'x' } }, /^args\.cni:/],
    [{ runtimeConfig: { hostname: 'bad name' } }, /^runtimeConfig\.hostname:/],
    [{ args: { cni: { aliases: ['ok', ''] } } }, /^args\.cni\.aliases\[1\]:/],
    [{ clusterDNS: { server: 'dns' } }, /^clusterDNS\.server:/],
    [{ clusterDNS: { server: '10.96.0.10', zone: 'a..b' } }, /^clusterDNS\.zone:/],
  ];
  for (const [extra, msg] of cases) {
    assert.throws(() => cluster(extra), (e: unknown) => e instanceof CniError && e.code === '7' && msg.test(e.message), JSON.stringify(extra));
  }
});

test('mergeDns: cluster nameserver and search first, static entries after, duplicate options dropped', () => {
  const c = { nameservers: ['10.96.0.10'], search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'], options: ['ndots:5'] };
  assert.deepEqual(mergeDns(c, undefined), c);
  assert.deepEqual(mergeDns(c, { nameservers: ['1.1.1.1', '10.96.0.10'], search: ['corp.example'], options: ['ndots:2', 'timeout:1'], domain: 'corp.example' }), {
    nameservers: ['10.96.0.10', '1.1.1.1'],
    search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'corp.example'],
    options: ['ndots:5', 'timeout:1'],
  });
  // A static domain joins the search list (no `domain` line to override the cluster's search).
  assert.deepEqual(mergeDns(c, { domain: 'site.example', search: ['corp.example'] }).search, ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'site.example', 'corp.example']);
  assert.equal(mergeDns(c, { domain: 'site.example' }).domain, undefined);
});

test('the DNS layer shapes the result from clusterDNS and the pod namespace, keeping the static dns', async () => {
  const { conf } = parseNetConf({ ...base, clusterDNS: { server: '10.96.0.10', zone: 'cluster.local' }, dns: { nameservers: ['9.9.9.9'], search: ['example.org'] } });
  const ctx = { att: { conf }, cluster: parseClusterConf(conf, 'c1', { K8S_POD_NAMESPACE: 'Shop' }) } as unknown as LayerContext;
  const r = await dnsLayer.add(ctx, { ips: [] }, new Transaction());
  assert.deepEqual(r.dns, {
    nameservers: ['10.96.0.10', '9.9.9.9'],
    search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'example.org'],
    options: ['ndots:5'],
  });
  const none = parseNetConf(base).conf;
  const same = { ips: [] };
  assert.equal(await dnsLayer.add({ att: { conf: none }, cluster: parseClusterConf(none, 'c1', {}) } as unknown as LayerContext, same, new Transaction()), same);
});

test('store pool: one open per spec while in use, closed when idle, a failed open is retried', async () => {
  let opened = 0, closed = 0, fail = true;
  const fake = { close: async () => { closed++; } } as unknown as Store;
  const pool = createStorePool({
    idleMs: 0,
    open: async (spec) => {
      if (spec === 'bad' && fail) { fail = false; throw new Error('down'); }
      opened++;
      return fake;
    },
  });
  await Promise.all([pool.use('a', async () => undefined), pool.use('a', async () => undefined)]);
  assert.equal(opened, 1);
  assert.equal(closed, 1);
  await assert.rejects(pool.use('bad', async () => undefined), /opening the cluster store bad: down/);
  await pool.use('bad', async () => undefined);
  assert.equal(opened, 2);
  const kept = createStorePool({ idleMs: 60_000, open: async () => { opened++; return fake; } });
  await kept.use('x', async () => undefined);
  await kept.use('x', async () => undefined);
  assert.equal(opened, 3);
  await kept.closeAll();
  assert.equal(closed, 3);
});

test('deferrer: runs after the grace period, cancel and replace win, flush runs what is pending', async () => {
  const { createDeferrer } = await import('../../cni/deferrer');
  const ran: string[] = [];
  const d = createDeferrer(20);
  d.later('a', async () => { ran.push('a1'); });
  d.later('a', async () => { ran.push('a2'); });
  d.later('b', async () => { ran.push('b'); });
  d.cancel('b');
  d.later('c', async () => { ran.push('c'); });
  assert.equal(d.pending(), 2);
  await d.flush();
  assert.deepEqual(ran.sort(), ['a2', 'c']);
  const errors: string[] = [];
  const e = createDeferrer(1, (k) => errors.push(k));
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  e.later('x', async () => { done(); throw new Error('boom'); });
  // The deferrer's timers never hold a process open: this test must.
  const keep = setInterval(() => undefined, 1000);
  await finished;
  clearInterval(keep);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(errors, ['x']);
  assert.equal(e.pending(), 0);
});
