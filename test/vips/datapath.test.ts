/**
 * The VIP datapath against the real kernel: a host namespace with a bridge,
 * a client pod and two server pods, createServiceVips programming the host
 * namespace (nft spawned inside it through lib/netns.ts), a memory store
 * holding the Services and endpoint records. Run twice: with br_netfilter
 * passing bridged traffic through netfilter (as on a kube node) and without
 * it (where same-bridge clients must be masqueraded).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { Lab, eventually, isRoot, NEEDS_ROOT } from '../helpers/lab';
import { openStore } from '../../store/open';
import { keys } from '../../store/keys';
import type { Store } from '../../store/types';
import type { EndpointRecord } from '../../store/records';
import type { Service } from '../../policies/model';
import { createServiceVips } from '../../agent/service-vips-controller';
import { HostTopology, TCP_PORT, UDP_PORT, type Pod } from './topology';

const VIP = '10.96.40.10';
const UDP_VIP = '10.96.40.11';
const EMPTY_VIP = '10.96.40.12';
const SELF_VIP = '10.96.40.13';
const VIP6 = 'fd00:96::40:10';
const EMPTY_VIP6 = 'fd00:96::40:12';

function service(name: string, ips: string | string[], selector: Record<string, string>, ports: Service['spec']['ports']): Service {
  const list = typeof ips === 'string' ? [ips] : ips;
  return { kind: 'Service', metadata: { name, namespace: 'prod', labels: {} }, spec: { type: 'ClusterIP', selector, ports, clusterIP: list[0], clusterIPs: list } };
}

function endpoint(pod: Pod, labels: Record<string, string>, ready = true): EndpointRecord {
  return { network: 'mesh', containerId: `c-${pod.name}`, ifname: 'eth0', namespace: 'prod', pod: pod.name, node: 'n1', ips: [pod.ip, pod.ip6], labels, ready };
}

const putDoc = (store: Store, s: Service) => store.put(keys.policy('Service', s.metadata.namespace, s.metadata.name), JSON.stringify(s));
const putEp = (store: Store, e: EndpointRecord) => store.put(keys.endpoint(e.network, e.containerId, e.ifname), JSON.stringify(e));

for (const brNetfilter of [false, true]) {
  test(`service VIPs in a host namespace (br_netfilter ${brNetfilter ? 'on' : 'off'})`, { skip: !isRoot && NEEDS_ROOT }, async (t) => {
    const lab = new Lab('mwv');
    const store = await openStore('memory:');
    let vips: ReturnType<typeof createServiceVips> | undefined;
    try {
      const topo = new HostTopology(lab);
      if (!topo.setBridgeNetfilter(brNetfilter) && brNetfilter) { t.skip('br_netfilter not available in this kernel'); return; }
      const client = topo.addPod('cl', false);
      const a = topo.addPod('pa', true);
      const b = topo.addPod('pb', true);
      await topo.waitServing(client, [a, b]);

      const app = { app: 'example' };
      await putDoc(store, service('example-prod', [VIP, VIP6], app, [{ name: 'http', port: 80, protocol: 'TCP', targetPort: TCP_PORT }]));
      await putDoc(store, service('example-udp', UDP_VIP, app, [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: UDP_PORT }]));
      await putDoc(store, service('nobody', [EMPTY_VIP, EMPTY_VIP6], { app: 'absent' }, [
        { port: 80, protocol: 'TCP', targetPort: TCP_PORT }, { port: 53, protocol: 'UDP', targetPort: UDP_PORT },
      ]));
      await putDoc(store, service('self', SELF_VIP, { self: 'yes' }, [{ port: 80, protocol: 'TCP', targetPort: TCP_PORT }]));
      await putEp(store, endpoint(a, { ...app, self: 'yes' }));
      await putEp(store, endpoint(b, app));

      const registry = new Registry();
      vips = createServiceVips({ store, netnsPath: topo.host.path, registry });
      await vips.start();
      assert.match(topo.tables(), /table inet meshwork-svc/);

      await t.test('connections to the VIP spread over both endpoints', async () => {
        const tally = await topo.probe(client, 'tcp', VIP, 80, 200);
        assert.equal((tally.pa ?? 0) + (tally.pb ?? 0), 200, `every connection answered: ${JSON.stringify(tally)}`);
        // Binomial(200, 0.5): below 50 on either side has probability ~1e-13.
        assert.ok(tally.pa >= 50 && tally.pb >= 50, `fair share each: ${JSON.stringify(tally)}`);
      });

      await t.test('the endpoint sees the client address unless they share the bridge without br_netfilter', async () => {
        const r = await client.ns.run(process.execPath, ['-e', `const s=require('net').connect(80,'${VIP}');let d='';s.on('data',c=>d+=c);s.on('end',()=>console.log(d))`]);
        const seen = r.stdout.trim().split(' ')[1];
        assert.equal(seen, brNetfilter ? client.ip : '10.244.7.1', `peer address seen by the endpoint: ${r.stdout}`);
      });

      await t.test('IPv6: the dual-stack service spreads over both endpoints on its IPv6 VIP', async () => {
        const tally = await topo.probe(client, 'tcp', VIP6, 80, 60);
        assert.equal((tally.pa ?? 0) + (tally.pb ?? 0), 60, JSON.stringify(tally));
        assert.ok(tally.pa > 0 && tally.pb > 0, JSON.stringify(tally));
      });

      await t.test('UDP to the VIP reaches both endpoints', async () => {
        const tally = await topo.probe(client, 'udp', UDP_VIP, 53, 60);
        assert.equal((tally.pa ?? 0) + (tally.pb ?? 0), 60, JSON.stringify(tally));
        assert.ok(tally.pa > 0 && tally.pb > 0, JSON.stringify(tally));
      });

      await t.test('the host itself reaches the VIP too', async () => {
        const tally = await topo.probe(topo.host, 'tcp', VIP, 80, 20);
        assert.equal((tally.pa ?? 0) + (tally.pb ?? 0), 20, JSON.stringify(tally));
      });

      await t.test('a not-ready endpoint stops being reached within a second', async () => {
        await putEp(store, endpoint(b, app, false));
        await eventually(() => !topo.host.sh('nft', ['list', 'table', 'inet', 'meshwork-svc']).stdout.includes(b.ip), 1000, 'pb leaving the table');
        const tally = await topo.probe(client, 'tcp', VIP, 80, 40);
        assert.deepEqual(tally, { pa: 40 });
        await putEp(store, endpoint(b, app, true));
        await eventually(async () => ((await topo.probe(client, 'tcp', VIP, 80, 20)).pb ?? 0) > 0, 5000, 'pb back');
      });

      await t.test('a removed endpoint stops being reached within a second', async () => {
        await store.delete(keys.endpoint('mesh', `c-${a.name}`, 'eth0'));
        await eventually(() => !topo.host.sh('nft', ['list', 'table', 'inet', 'meshwork-svc']).stdout.includes(a.ip), 1000, 'pa leaving the table');
        assert.deepEqual(await topo.probe(client, 'tcp', VIP, 80, 40), { pb: 40 });
        assert.deepEqual(await topo.probe(client, 'udp', UDP_VIP, 53, 10), { pb: 10 });
        await putEp(store, endpoint(a, { ...app, self: 'yes' }));
        await eventually(async () => ((await topo.probe(client, 'tcp', VIP, 80, 20)).pa ?? 0) > 0, 5000, 'pa back');
      });

      await t.test('a UDP flow pinned to an endpoint that leaves moves to another one', async () => {
        const first = await topo.probe(client, 'udp@40000', UDP_VIP, 53, 5);
        const [pinned, count] = Object.entries(first)[0];
        assert.equal(count, 5, `one flow, one endpoint: ${JSON.stringify(first)}`);
        const [gone, other] = pinned === 'pa' ? [a, b] : [b, a];
        await putEp(store, endpoint(gone, gone === a ? { ...app, self: 'yes' } : app, false));
        await eventually(async () => (await topo.probe(client, 'udp@40000', UDP_VIP, 53, 1))[other.name] === 1, 1000, 'the flow moving');
        assert.deepEqual(await topo.probe(client, 'udp@40000', UDP_VIP, 53, 5), { [other.name]: 5 });
        await putEp(store, endpoint(gone, gone === a ? { ...app, self: 'yes' } : app, true));
        await eventually(async () => ((await topo.probe(client, 'tcp', VIP, 80, 20))[gone.name] ?? 0) > 0, 5000, `${gone.name} back`);
      });

      await t.test('a service without ready endpoints rejects at once (TCP reset, ICMP for UDP)', async () => {
        assert.deepEqual(await topo.probe(client, 'tcp', EMPTY_VIP, 80, 3), { 'error:ECONNREFUSED': 3 });
        assert.deepEqual(await topo.probe(client, 'udp', EMPTY_VIP, 53, 3), { 'error:ECONNREFUSED': 3 });
        assert.deepEqual(await topo.probe(client, 'tcp', EMPTY_VIP6, 80, 3), { 'error:ECONNREFUSED': 3 });
        assert.deepEqual(await topo.probe(client, 'udp', EMPTY_VIP6, 53, 3), { 'error:ECONNREFUSED': 3 });
        const table = topo.host.sh('nft', ['list', 'map', 'inet', 'meshwork-svc', 'no-endpoints4']).stdout;
        assert.match(table, new RegExp(`${EMPTY_VIP.replace(/\./g, '\\.')} \\. tcp \\. 80`));
      });

      await t.test('a port the VIP does not serve is refused at once, not routed on as if the VIP were a host', async () => {
        // 8080 is the endpoints' port, 53/udp is served by another VIP: neither is a port of this one.
        assert.deepEqual(await topo.probe(client, 'tcp', VIP, 443, 2), { 'error:ECONNREFUSED': 2 });
        assert.deepEqual(await topo.probe(client, 'tcp', VIP, TCP_PORT, 2), { 'error:ECONNREFUSED': 2 });
        assert.deepEqual(await topo.probe(client, 'udp', VIP, 53, 2), { 'error:ECONNREFUSED': 2 });
        assert.deepEqual(await topo.probe(client, 'tcp', VIP6, 443, 2), { 'error:ECONNREFUSED': 2 });
        assert.deepEqual(await topo.probe(client, 'tcp', EMPTY_VIP, 443, 2), { 'error:ECONNREFUSED': 2 });
        assert.deepEqual(await topo.probe(topo.host, 'tcp', VIP, 443, 2), { 'error:ECONNREFUSED': 2 });
        // The served ports are untouched.
        const tally = await topo.probe(client, 'tcp', VIP, 80, 10);
        assert.equal((tally.pa ?? 0) + (tally.pb ?? 0), 10, JSON.stringify(tally));
      });

      await t.test('hairpin: a pod reaches itself through a VIP', async () => {
        assert.deepEqual(await topo.probe(a, 'tcp', SELF_VIP, 80, 5), { pa: 5 });
        const mixed = await topo.probe(a, 'tcp', VIP, 80, 40);
        assert.equal((mixed.pa ?? 0) + (mixed.pb ?? 0), 40, JSON.stringify(mixed));
      });

      await t.test('an unchanged cluster runs no nft, metrics count the passes', async () => {
        const r = await vips!.reconcileNow();
        assert.equal(r.applied, false);
        const text = await registry.metrics();
        assert.match(text, /^meshwork_vips_services 4$/m);
        assert.match(text, /^meshwork_vips_endpoints 7$/m); // http 2 + 2 (v4, v6), udp 2, self 1, nobody 0
        assert.match(text, /^meshwork_vips_ports_without_endpoints 4$/m); // nobody: 80/tcp and 53/udp on both VIPs
        assert.match(text, /^meshwork_vips_sync_errors_total 0$/m);
        assert.match(text, /^meshwork_vips_sync_duration_seconds_count \d+$/m);
      });

      await t.test('a restart (stop keeping the table) leaves VIPs working; the next controller takes over', async () => {
        await vips!.stop({ keepTable: true });
        vips = undefined;
        assert.match(topo.tables(), /meshwork-svc/);
        const during = await topo.probe(client, 'tcp', VIP, 80, 20);
        assert.equal((during.pa ?? 0) + (during.pb ?? 0), 20, `answered while no agent runs: ${JSON.stringify(during)}`);
        vips = createServiceVips({ store, netnsPath: topo.host.path });
        await vips.start();
        const after = await topo.probe(client, 'tcp', VIP, 80, 20);
        assert.equal((after.pa ?? 0) + (after.pb ?? 0), 20, JSON.stringify(after));
      });

      await t.test('stop removes the table', async () => {
        await vips!.stop();
        vips = undefined;
        assert.doesNotMatch(topo.tables(), /meshwork-svc/);
        // The VIP is now just an unrouted address: nothing answers it.
        const tally = await topo.probe(client, 'tcp', VIP, 80, 1);
        assert.equal(tally.pa ?? tally.pb, undefined, JSON.stringify(tally));
      });
    } finally {
      await vips?.stop().catch(() => undefined);
      await store.close();
      await lab.cleanup();
    }
  });
}
