import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { openStore } from '../../store/open';
import { keys } from '../../store/keys';
import type { EndpointRecord, NodeRecord } from '../../store/records';
import type { Service } from '../../policies/model';
import type { StatusReport } from '../../cli/status';
import { run, repoRoot } from '../helpers/lab';

const CLI = path.join(repoRoot, 'bin', 'meshwork');

/** A DNS server on 127.0.0.1:0 that answers every query NXDOMAIN. */
async function nxdomainServer(): Promise<{ addr: string; close(): void }> {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    const reply = Buffer.from(msg);
    reply[2] = 0x81 | (msg[2] & 0x78); // QR, opcode, RD
    reply[3] = 0x83; // RA, RCODE 3
    reply.writeUInt16BE(0, 6);
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { addr: `127.0.0.1:${sock.address().port}`, close: () => sock.close() };
}

async function serve(handler: http.RequestListener): Promise<{ url: string; close(): void }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

async function closedPortUrl(): Promise<string> {
  const s = await serve(() => undefined);
  s.close();
  return s.url;
}

test('meshwork status: node, subnet, peers, pods, services, DNS, agent and sidecar breakers; degrades when parts are missing', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-status-'));
  const spec = `file:${dir}`;
  const dnsServer = await nxdomainServer();
  const agent = await serve((req, res) => {
    res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, registered: true, peers: 1 }));
  });
  const sidecar = await serve((req, res) => {
    if (req.url === '/ready') { res.writeHead(200).end('ready\n'); return; }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify([{ service: 'reviews.default', port: 80, endpoints: [
      { address: '10.244.1.3:8080', pod: 'default/reviews-v1-1', subsets: ['v1'], breaker: 'closed', ejected: false },
      { address: '10.244.2.2:8080', pod: 'default/reviews-v2-1', subsets: ['v2'], breaker: 'open', ejected: true },
    ] }]));
  });
  const deadAgent = await closedPortUrl();
  try {
    const store = await openStore(spec);
    const nodes: NodeRecord[] = [
      { name: 'host-a', underlay: '192.168.50.1', vtepMac: '02:00:00:00:00:0a', podSubnets: { overlay: ['10.244.1.0/24'] }, dns: dnsServer.addr },
      { name: 'host-b', underlay: '192.168.50.2', podSubnets: { overlay: ['10.244.2.0/24'] } },
    ];
    for (const n of nodes) await store.put(keys.node(n.name), JSON.stringify(n));
    const ep = (pod: string, ip: string, node: string, labels: Record<string, string>): EndpointRecord =>
      ({ network: 'overlay', containerId: `c-${pod}`, ifname: 'eth0', namespace: 'default', pod, node, ips: [ip], labels, ready: true, mesh: true });
    for (const e of [ep('reviews-v1-1', '10.244.1.3', 'host-a', { app: 'reviews' }), ep('reviews-v2-1', '10.244.2.2', 'host-b', { app: 'reviews' })]) {
      await store.put(keys.endpoint(e.network, e.containerId, e.ifname), JSON.stringify(e));
    }
    const svc: Service = { kind: 'Service', metadata: { name: 'reviews', namespace: 'default', labels: {} }, spec: { type: 'ClusterIP', selector: { app: 'reviews' }, ports: [{ port: 80, protocol: 'TCP', targetPort: 8080 }], clusterIP: '10.96.0.10' } };
    await store.put(keys.policy('Service', 'default', 'reviews'), JSON.stringify(svc));
    await store.close();

    const j = await run(process.execPath, [CLI, 'status', '--json', '--store', spec, '--node', 'host-a', '--agent', agent.url, '--sidecar', sidecar.url]);
    assert.equal(j.code, 0, j.stderr);
    const r = JSON.parse(j.stdout) as StatusReport;
    assert.equal(r.store.ok, true);
    assert.deepEqual(r.subnets, ['10.244.1.0/24 (overlay)']);
    assert.deepEqual(r.peers, [{ name: 'host-b', underlay: '192.168.50.2', subnets: ['10.244.2.0/24'] }]);
    assert.deepEqual(r.pods.map((p) => p.pod), ['default/reviews-v1-1']);
    assert.deepEqual(r.services, [{ service: 'reviews.default', clusterIP: '10.96.0.10', ports: '80/TCP', endpoints: 2, ready: 2 }]);
    assert.equal(r.dns.ok, true, r.dns.detail);
    assert.match(r.dns.detail, /NXDOMAIN/);
    assert.equal(r.agent.ok, true);
    assert.equal(r.sidecars[0].endpoints.find((e) => e.pod === 'default/reviews-v2-1')!.breaker, 'open');
    assert.deepEqual(r.problems, []);

    const t = await run(process.execPath, [CLI, 'status', '--store', spec, '--node', 'host-a', '--agent', deadAgent, '--sidecar', sidecar.url]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^Node\s+host-a\s+underlay 192\.168\.50\.1/m);
    assert.match(t.stdout, /^Subnet\s+10\.244\.1\.0\/24 \(overlay\)/m);
    assert.match(t.stdout, /^Agent\s+DOWN\s+not reachable at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/m);
    assert.match(t.stdout, /^DNS\s+ok\s+127\.0\.0\.1:\d+: answers/m);
    assert.match(t.stdout, /host-b\s+192\.168\.50\.2\s+10\.244\.2\.0\/24/);
    assert.match(t.stdout, /reviews\.default\s+10\.96\.0\.10\s+80\/TCP\s+2\/2 ready/);
    assert.match(t.stdout, /reviews\.default\s+10\.244\.2\.2:8080 \(default\/reviews-v2-1\)\s+v2\s+open\s+yes/);
    assert.match(t.stdout, /Problems:\n  - agent not reachable at/);

    // No store at all, an unregistered node: still a report, never a stack trace, and no store dir created.
    const nowhere = path.join(dir, 'nowhere');
    const m = await run(process.execPath, [CLI, 'status', '--store', `file:${nowhere}`, '--node', 'ghost', '--agent', deadAgent]);
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stdout, /Store\s+DOWN\s+file:.*nowhere: no store at/);
    assert.match(m.stdout, /DNS\s+DOWN\s+unknown \(node not registered\)/);
    assert.match(m.stdout, /Sidecars:\n  none given/);
    assert.ok(!fs.existsSync(nowhere));
    const g = await run(process.execPath, [CLI, 'status', '--store', spec, '--node', 'ghost', '--agent', agent.url]);
    assert.match(g.stdout, /node "ghost" is not registered in the store \(known: host-a, host-b\)/);
  } finally {
    dnsServer.close();
    agent.close();
    sidecar.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('meshwork status --timeout: a bad value is refused naming the flag', async () => {
  for (const v of ['abc', '0', '1.5']) {
    const r = await run(process.execPath, [CLI, 'status', '--store', 'memory:', '--timeout', v]);
    assert.equal(r.code, 1, r.stdout);
    assert.equal(r.stderr, `meshwork: --timeout ${v}: expected milliseconds, a whole number above 0\n`);
  }
});
