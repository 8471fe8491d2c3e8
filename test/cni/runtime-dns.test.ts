/**
 * The result's `dns` as a runtime reads it, from the real plugin on real
 * namespaces, for the bridge and macvlan drivers and every result version:
 * `clusterDNS` merged over the static `dns`, and the `dns` capability
 * (`runtimeConfig.dns`, what the kubelet computed from the pod's dnsPolicy)
 * replacing both.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, isRoot, NEEDS_ROOT, type Netns } from '../helpers/lab';
import { bridgeConf, callPlugin } from './harness';

const STATIC = { nameservers: ['10.1.1.1'], search: ['corp.example'], options: ['edns0'] };
const CLUSTER = { nameservers: ['10.96.0.10', '10.1.1.1'], search: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'corp.example'], options: ['ndots:5', 'edns0'] };
// dnsPolicy: Default, as the kubelet passes it: the node's resolver, no cluster names.
const RUNTIME = { servers: ['192.0.2.53'], searches: ['node.example'], options: ['ndots:1', 'timeout:2'] };

function conf(lab: Lab, driver: 'bridge' | 'macvlan', version: string, extra: Record<string, unknown>): Record<string, any> {
  const c = bridgeConf(lab, { name: `${lab.id}-${driver}`, n: driver === 'bridge' ? 1 : 2, version, extra: { node: 'n1', dns: STATIC, clusterDNS: { server: '10.96.0.10' }, ...extra } });
  if (driver === 'macvlan') {
    for (const k of ['bridge', 'isGateway', 'isDefaultGateway', 'ipMasq']) delete c[k];
    Object.assign(c, { driver: 'macvlan', master: 'up0' });
  }
  return c;
}

test('result dns: clusterDNS over the static dns, runtimeConfig.dns replacing both (bridge, macvlan; 0.4.0, 1.0.0, 1.1.0)', { skip: !isRoot && NEEDS_ROOT, timeout: 120_000 }, async () => {
  const lab = new Lab('mwrd');
  try {
    const host = lab.netns('host');
    host.ip('link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1');
    host.ip('link', 'set', 'up0', 'up');
    host.ip('link', 'set', 'up1', 'up');
    let n = 0;
    const add = async (c: Record<string, unknown>): Promise<{ pod: Netns; out: any }> => {
      const pod = lab.netns(`p${++n}`);
      const r = await callPlugin(host, { command: 'ADD', containerId: `${lab.id}-${n}`, netns: pod.path, ifname: 'eth0', args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1' }, c);
      return { pod, out: r.json ?? { stdout: r.stdout, stderr: r.stderr } };
    };
    for (const driver of ['bridge', 'macvlan'] as const) {
      for (const version of ['0.4.0', '1.0.0', '1.1.0']) {
        const what = `${driver} ${version}`;
        const merged = await add(conf(lab, driver, version, {}));
        assert.equal(merged.out.cniVersion, version, `${what}: ${JSON.stringify(merged.out)}`);
        assert.deepEqual(merged.out.dns, CLUSTER, what);

        const rt = await add(conf(lab, driver, version, { capabilities: { dns: true }, runtimeConfig: { dns: RUNTIME } }));
        assert.deepEqual(rt.out.dns, { nameservers: RUNTIME.servers, search: RUNTIME.searches, options: RUNTIME.options }, `${what}: runtimeConfig.dns wins`);

        // No servers: the runtime says nothing, the cluster config stands.
        const empty = await add(conf(lab, driver, version, { runtimeConfig: { dns: { servers: [], searches: ['x.example'] } } }));
        assert.deepEqual(empty.out.dns, CLUSTER, `${what}: empty runtimeConfig.dns`);
      }
    }

    // Bad input is refused before any wiring, naming the field, without a stack trace.
    for (const [dns, field] of [[{ servers: ['dns.example'] }, /runtimeConfig\.dns\.servers\[0\]: "dns\.example" is not an IP address/], [{ servers: '10.0.0.1' }, /runtimeConfig\.dns\.servers: expected a list of strings/], ['8.8.8.8', /runtimeConfig\.dns: expected \{"servers"/]] as const) {
      const bad = await add(conf(lab, 'bridge', '1.0.0', { runtimeConfig: { dns } }));
      assert.equal(bad.out.code, 7, JSON.stringify(bad.out));
      assert.match(bad.out.msg, field);
      assert.doesNotMatch(JSON.stringify(bad.out), /\n\s+at /);
      assert.doesNotMatch(bad.pod.ip('-o', 'link', 'show'), /eth0/, 'nothing wired for a refused call');
    }
  } finally {
    await lab.cleanup();
  }
});
