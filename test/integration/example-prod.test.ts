/**
 * The seeds' scenario, end to end through every part a pod without a sidecar
 * meets: pods wired by `meshwork-cni` (overlay) record themselves with their
 * labels in the store; `meshwork policy apply` declares `example-prod` and
 * allocates its cluster IP; the host's `meshwork agent` answers its name
 * (--dns) and load-balances its VIP over the ready endpoints (--service-vips).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lab, eventually, isRoot, NEEDS_ROOT, repoRoot, run } from '../helpers/lab';
import { Overlay, type Host, type Pod } from '../overlay/topology';

const SERVICE_CIDR = '10.200.0.0/16';

class ServiceHost extends Overlay {
  override agentArgs(h: Host): string[] {
    return [...super.agentArgs(h), '--dns', h.underlay, '--service-vips'];
  }
  /** A pod with labels, so a Service can select it. */
  async labelledPod(h: Host, name: string, labels: Record<string, string>): Promise<Pod> {
    const ns = this.lab.netns(name);
    const containerId = `${this.lab.id}-${name}`;
    const conf = JSON.parse(this.cniConf(h));
    conf.runtimeConfig = { labels };
    const out = JSON.parse(await this.cni(h, 'ADD', { ns, containerId }, JSON.stringify(conf)));
    const ip = String(out.ips[0].address).split('/')[0];
    // Each endpoint answers with its own address.
    this.lab.spawnIn(ns, process.execPath, ['-e', `require('net').createServer((s) => s.end(s.localAddress)).listen(7070, '0.0.0.0')`]);
    const pod = { name, ns, host: h, ip, containerId };
    this.pods.push(pod);
    return pod;
  }
}

const CONNECT = `const s = require('net').connect(Number(process.argv[2]), process.argv[1]); let d = '';
s.setTimeout(2000, () => { s.destroy(); process.exit(2); });
s.on('data', (c) => (d += c)); s.on('end', () => { console.log(d); process.exit(0); }); s.on('error', () => process.exit(1));`;

test('example-prod: two endpoints behind one cluster IP, resolved by name and load-balanced by the host', { skip: !isRoot && NEEDS_ROOT }, async () => {
  const lab = new Lab('mwx');
  try {
    const storeDir = path.join(lab.tmp, 'store');
    const store = `file:${storeDir}`;
    const o = new ServiceHost(lab, store);
    const h = o.addHost();
    await o.startAgent(h);
    const a = await o.labelledPod(h, 'a', { app: 'example-prod', version: 'v1' });
    const b = await o.labelledPod(h, 'b', { app: 'example-prod', version: 'v1' });
    const client = await o.labelledPod(h, 'c', { app: 'client' });

    const doc = path.join(lab.tmp, 'example-prod.yaml');
    fs.writeFileSync(doc, [
      'apiVersion: meshwork.dev/v1', 'kind: Service', 'metadata:', '  name: example-prod', 'spec:',
      '  selector:', '    app: example-prod', '  ports:', '    - name: http', '      port: 80', '      targetPort: 7070', '',
    ].join('\n'));
    const applied = await run(process.execPath, [path.join(repoRoot, 'bin', 'meshwork'), 'policy', 'apply', '-f', doc, '--store', store, '--service-cidr', SERVICE_CIDR]);
    assert.equal(applied.code, 0, applied.stderr);

    // The name, from the client pod, through the host's DNS.
    const vip: string = await eventually(async () => {
      const r = await client.ns.run('dig', ['+short', '+time=1', '+tries=1', `@${h.underlay}`, 'example-prod.default.svc.cluster.local', 'A']);
      const ip = r.stdout.trim();
      return /^10\.200\.\d+\.\d+$/.test(ip) ? ip : '';
    }, 15_000, 'example-prod to resolve to a cluster IP');
    const srv = await client.ns.run('dig', ['+short', `@${h.underlay}`, '_http._tcp.example-prod.default.svc.cluster.local', 'SRV']);
    assert.match(srv.stdout, / 80 example-prod\.default\.svc\.cluster\.local\.$/m);

    // The VIP, from the client pod: every connection lands on a ready endpoint, and both get a share.
    const seen = new Map<string, number>();
    await eventually(async () => (await client.ns.run(process.execPath, ['-e', CONNECT, vip, '80'])).code === 0, 15_000, 'the VIP to accept');
    for (let i = 0; i < 60; i++) {
      const r = await client.ns.run(process.execPath, ['-e', CONNECT, vip, '80']);
      assert.equal(r.code, 0, `connection ${i} to ${vip}:80 failed: ${r.stderr}`);
      const who = r.stdout.trim();
      seen.set(who, (seen.get(who) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), [a.ip, b.ip].sort());
    for (const [who, n] of seen) assert.ok(n >= 10, `${who} got only ${n} of 60 connections`);

    // Endpoint b leaves (DEL): its record goes, and the VIP stops reaching it.
    await o.cni(h, 'DEL', { ns: b.ns, containerId: b.containerId });
    await eventually(async () => {
      for (let i = 0; i < 10; i++) {
        const r = await client.ns.run(process.execPath, ['-e', CONNECT, vip, '80']);
        if (r.stdout.trim() !== a.ip) return false;
      }
      return true;
    }, 10_000, 'the VIP to reach only the remaining endpoint');
  } finally {
    await lab.cleanup();
  }
});
