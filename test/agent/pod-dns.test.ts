/**
 * Service discovery as a pod meets it, from the outside: two hosts each run
 * `meshwork agent --dns <underlay>`; pods are ADDed by `meshwork-cni` with
 * `clusterDNS` and the Kubernetes CNI_ARGS, and their resolv.conf is written
 * from the ADD result's `dns` the way a runtime does; Services come from
 * `meshwork policy apply`. The pod's own glibc resolver then finds services by
 * short, namespaced and full names, a headless endpoint's hostname, and
 * names outside the cluster through the agent's forwarding; the agent's
 * /metrics count those queries; a restarted agent answers again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, eventually, isRoot, NEEDS_ROOT, repoRoot, run, type Netns } from '../helpers/lab';
import { Overlay, type Host } from '../overlay/topology';

const UPSTREAM = '192.168.90.254';
const HTTP = `require('http').createServer((q, s) => s.end(q.socket.localAddress)).listen(7070, '0.0.0.0')`;

class DnsHosts extends Overlay {
  override agentArgs(h: Host): string[] {
    return [...super.agentArgs(h), '--dns', h.underlay, '--service-vips'];
  }
}

/** What a runtime writes from a CNI result's `dns`. */
function resolvConf(dns: { nameservers?: string[]; search?: string[]; options?: string[] }): string {
  return [
    ...(dns.search?.length ? [`search ${dns.search.join(' ')}`] : []),
    ...(dns.nameservers ?? []).map((n) => `nameserver ${n}`),
    ...(dns.options?.length ? [`options ${dns.options.join(' ')}`] : []),
    '',
  ].join('\n');
}

/** `ip netns exec` binds /etc/netns/<ns>/<file> over /etc/<file>: how a host or pod gets its own resolv.conf. */
function etcFile(lab: Lab, ns: Netns, text: string): void {
  const dir = path.join('/etc/netns', ns.name);
  fs.mkdirSync(dir, { recursive: true });
  lab.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'resolv.conf'), text);
}

test('a pod wired by meshwork-cni finds services through its own resolver and the node agent\'s DNS', { skip: !isRoot && NEEDS_ROOT, timeout: 180_000 }, async () => {
  const lab = new Lab('mwpd');
  try {
    const store = `file:${path.join(lab.tmp, 'store')}`;
    const o = new DnsHosts(lab, store);
    const [h1, h2] = [o.addHost(), o.addHost()];
    // The hosts' resolver (the agents' default upstream) is a stand-in on the underlay switch.
    o.underlay.ip('addr', 'add', `${UPSTREAM}/24`, 'dev', 'br0');
    const up = lab.spawnIn(o.underlay, process.execPath, ['-e', `require(${JSON.stringify(path.join(repoRoot, 'dist/test/dns/fake-upstream'))}).startFakeUpstream('${UPSTREAM}', 53).then(() => console.log('up'))`]);
    let upOut = '';
    up.stdout!.on('data', (d) => (upOut += d));
    await eventually(() => upOut.includes('up'), 10_000, 'the upstream');
    for (const h of [h1, h2]) etcFile(lab, h.ns, `nameserver ${UPSTREAM}\n`);
    await o.startAgent(h1);
    await o.startAgent(h2);

    const pods = new Map<string, { ns: Netns; ip: string; dns: any }>();
    const pod = async (h: Host, name: string, namespace: string, labels: Record<string, string>, hostname?: string) => {
      const ns = lab.netns(name);
      const containerId = `${lab.id}-${name}`;
      const conf = { ...JSON.parse(o.cniConf(h)), clusterDNS: { server: h.underlay, zone: 'cluster.local' }, runtimeConfig: { labels, ...(hostname ? { hostname } : {}) } };
      const r = await h.ns.run('env', [
        'CNI_COMMAND=ADD', `CNI_CONTAINERID=${containerId}`, `CNI_NETNS=${ns.path}`, 'CNI_IFNAME=eth0', 'CNI_PATH=/nonexistent',
        `CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${containerId}`,
        `MESHWORK_CNI_SOCKET=${path.join(h.stateDir, 'cni.sock')}`, path.join(repoRoot, 'bin', 'meshwork-cni'),
      ], { input: JSON.stringify(conf) });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const out = JSON.parse(r.stdout);
      etcFile(lab, ns, resolvConf(out.dns));
      lab.spawnIn(ns, process.execPath, ['-e', HTTP]);
      pods.set(name, { ns, ip: String(out.ips[0].address).split('/')[0], dns: out.dns });
    };
    await pod(h1, 'client', 'default', { app: 'client' });
    await pod(h1, 'web1', 'other-ns', { app: 'web' });
    await pod(h2, 'web2', 'other-ns', { app: 'web' });
    await pod(h2, 'db0', 'other-ns', { app: 'db' }, 'db-0');
    await pod(h2, 'peer', 'other-ns', { app: 'client' });
    assert.deepEqual(pods.get('client')!.dns, { nameservers: [h1.underlay], search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'], options: ['ndots:5'] });
    assert.deepEqual(pods.get('peer')!.dns.search, ['other-ns.svc.cluster.local', 'svc.cluster.local', 'cluster.local']);

    const doc = path.join(lab.tmp, 'services.yaml');
    fs.writeFileSync(doc, [
      'apiVersion: meshwork.dev/v1', 'kind: Service', 'metadata: {name: my-svc, namespace: other-ns}',
      'spec:', '  selector: {app: web}', '  ports: [{name: http, port: 80, targetPort: 7070}]', '---',
      'apiVersion: meshwork.dev/v1', 'kind: Service', 'metadata: {name: db, namespace: other-ns}',
      'spec:', '  clusterIP: None', '  selector: {app: db}', '  ports: [{name: pg, port: 7070}]', '',
    ].join('\n'));
    const applied = await run(process.execPath, [path.join(repoRoot, 'bin', 'meshwork'), 'policy', 'apply', '-f', doc, '--store', store, '--service-cidr', '10.200.0.0/16']);
    assert.equal(applied.code, 0, applied.stderr);

    const client = pods.get('client')!.ns, peer = pods.get('peer')!.ns;
    const ahosts = async (ns: Netns, name: string): Promise<string[]> => {
      const r = await ns.run('getent', ['ahostsv4', name], { timeoutMs: 15_000 });
      return [...new Set(r.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/)[0]))];
    };
    const vip = (await eventually(async () => {
      const [ip] = await ahosts(client, 'my-svc.other-ns');
      return ip && /^10\.200\./.test(ip) ? ip : '';
    }, 15_000, 'my-svc.other-ns from the client pod'));
    for (const name of ['my-svc.other-ns.svc', 'my-svc.other-ns.svc.cluster.local', 'my-svc.other-ns.svc.cluster.local.', 'My-Svc.Other-NS']) {
      assert.deepEqual(await ahosts(client, name), [vip], name);
    }
    assert.deepEqual(await ahosts(client, 'my-svc'), [], 'my-svc is not in the client\'s namespace');
    // Same namespace, other host (its own agent): the short name.
    assert.deepEqual(await ahosts(peer, 'my-svc'), [vip]);
    const db0 = pods.get('db0')!.ip;
    assert.deepEqual(await ahosts(peer, 'db'), [db0], 'headless: the ready endpoint');
    assert.deepEqual(await ahosts(peer, 'db-0.db'), [db0], 'headless: the endpoint\'s hostname');
    assert.deepEqual(await ahosts(client, 'db-0.db.other-ns'), [db0]);
    assert.deepEqual(await ahosts(client, `${db0.replace(/\./g, '-')}.other-ns.pod`), [db0]);
    // Outside the cluster: through the agent to the host's resolver.
    assert.deepEqual(await ahosts(client, 'known.example.test'), ['192.0.2.1']);
    const t0 = Date.now();
    assert.deepEqual(await ahosts(client, 'nosuch.example.test'), []);
    assert.ok(Date.now() - t0 < 3000, 'a name nobody knows fails fast');
    // A connection by name reaches an endpoint through the VIP.
    const curl = await eventually(async () => {
      const r = await client.run('curl', ['-s', '-m', '3', 'http://my-svc.other-ns/']);
      return r.code === 0 ? r.stdout : '';
    }, 15_000, 'curl http://my-svc.other-ns/');
    assert.ok([pods.get('web1')!.ip, pods.get('web2')!.ip].includes(curl), curl);

    // The agent's metrics count what the pods asked.
    const port = /"msg":"metrics listening".*?"port":(\d+)/.exec(h1.log)![1];
    const metrics = h1.ns.sh('curl', ['-s', `http://127.0.0.1:${port}/metrics`]).stdout;
    const value = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? 0);
    assert.ok(value(/^meshwork_dns_queries_total\{type="A",rcode="NOERROR"\} (\d+)/m) > 0, metrics);
    assert.ok(value(/^meshwork_dns_queries_total\{type="A",rcode="NXDOMAIN"\} (\d+)/m) > 0, 'the search list walks through NXDOMAINs');
    assert.ok(value(new RegExp(`^meshwork_dns_upstream_duration_seconds_count\\{upstream="${UPSTREAM}:53"\\} (\\d+)`, 'm')) > 0, 'upstream latency');

    // A restarted agent (SIGTERM, start again) answers again.
    await o.stopAgent(h1, 'SIGTERM');
    assert.equal(h1.agent!.exitCode, 0, h1.log);
    await o.startAgent(h1);
    await eventually(async () => (await ahosts(client, 'my-svc.other-ns'))[0] === vip, 10_000, 'answers after the restart');
  } finally {
    await lab.cleanup();
  }
});
