/**
 * The sidecar in real namespaces with real processes: a client pod whose
 * namespace is intercepted by our nftables rules with `meshwork sidecar`
 * running in it, and three server pods (v1, v1, v2) on a bridge. Traffic goes
 * to a service VIP that exists nowhere but in the policies: only the
 * interception and the sidecar make it reach a pod.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Lab, NEEDS_ROOT, eventually, isRoot, repoRoot, type Netns } from '../helpers/lab';
import { installInterception, removeInterception, hasInterception } from '../../sidecar/intercept';

const CLI = path.join(repoRoot, 'dist', 'cli', 'main.js');
const SERVER = path.join(__dirname, 'pod-server.js');
const CLIENT = path.join(__dirname, 'pod-client.js');
const VIP = '10.96.0.10';
const ECHO_VIP = '10.96.0.11';
const PODS = [
  { name: 's1', ip: '10.98.0.11', version: 'v1' },
  { name: 's2', ip: '10.98.0.12', version: 'v1' },
  { name: 's3', ip: '10.98.0.13', version: 'v2' },
];

/** Policies in the users' YAML, read by the policies watcher. */
function policyYaml(v1: number, v2: number): string {
  return `apiVersion: meshwork.dev/v1
kind: Service
metadata: { name: reviews }
spec:
  clusterIP: ${VIP}
  selector: { app: reviews }
  ports: [{ name: http, port: 9080, targetPort: 8080 }]
---
apiVersion: meshwork.dev/v1
kind: Service
metadata: { name: echo }
spec:
  clusterIP: ${ECHO_VIP}
  selector: { app: reviews }
  ports: [{ name: raw, port: 7000, targetPort: 7000 }]
---
apiVersion: meshwork.dev/v1
kind: TrafficPolicy
metadata: { name: reviews }
spec:
  service: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
  loadBalancer: { simple: ROUND_ROBIN }
  retries:
    attempts: 2
    perTryTimeout: 2s
    retryOn: [connect-failure, reset, 5xx]
    budget: { percent: 50, minRetriesPerSecond: 500 }
  circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 5, rollingCountTimeout: 1s, resetTimeout: 500ms }
  routes:
    - name: testers
      matches: [{ headers: [{ name: x-user, exact: tester }] }]
      backends: [{ subset: v2 }]
    - name: canary
      backends: [{ subset: v1, weight: ${v1} }, { subset: v2, weight: ${v2} }]
`;
}

const endpointsJson = JSON.stringify(PODS.map((p) => ({ pod: p.name, namespace: 'default', ips: [p.ip], labels: { app: 'reviews', version: p.version } })));

async function client(ns: Netns, ...args: string[]): Promise<any> {
  const r = await ns.run(process.execPath, [CLIENT, ...args], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function curl(ns: Netns, url: string): string {
  return ns.sh('curl', ['-s', '--max-time', '5', url], { allowFail: true }).stdout;
}

function startSidecar(lab: Lab, ns: Netns, file: string, workload: string): ChildProcess {
  const p = lab.spawnIn(ns, process.execPath, [CLI, 'sidecar', '--policies', file, '--endpoints', path.join(path.dirname(file), 'endpoints.json'), '--workload', workload, '--namespace', 'default', '--drain-ms', '2000']);
  p.stderr?.on('data', () => {});
  p.stdout?.on('data', () => {});
  return p;
}

test('sidecar in intercepted namespaces: split, header route, TCP, WebSocket, inbound, reload, endpoint loss, restart', { skip: !isRoot && NEEDS_ROOT, timeout: 300_000 }, async () => {
  const lab = new Lab('mws');
  try {
    const br = lab.netns('br');
    br.ip('link', 'add', 'br0', 'type', 'bridge');
    br.ip('link', 'set', 'br0', 'up');
    const pod = (name: string, ip: string): Netns => {
      const ns = lab.netns(name);
      lab.veth(ns, 'eth0', `${ip}/24`, br, `v${name}`, undefined);
      br.ip('link', 'set', `v${name}`, 'master', 'br0');
      ns.ip('route', 'add', 'default', 'dev', 'eth0');
      return ns;
    };
    const cl = pod('cl', '10.98.0.10');
    const servers = PODS.map((p) => ({ ...p, ns: pod(p.name, p.ip) }));
    const procs = new Map<string, ChildProcess>();
    const startServer = (s: typeof servers[number]) => procs.set(s.name, lab.spawnIn(s.ns, process.execPath, [SERVER, s.name, s.version, '8080', '7000']));
    servers.forEach(startServer);
    const file = path.join(lab.tmp, 'policies.yaml');
    fs.writeFileSync(file, policyYaml(90, 10));
    fs.writeFileSync(path.join(lab.tmp, 'endpoints.json'), endpointsJson);

    installInterception(cl.path, { outboundPort: 15001, inboundPort: 15006, excludeInboundPorts: [15090] });
    installInterception(cl.path, { outboundPort: 15001, inboundPort: 15006, excludeInboundPorts: [15090] }); // idempotent
    assert.ok(hasInterception(cl.path));
    // s3 is injected too: its inbound traffic passes its own sidecar.
    installInterception(servers[2].ns.path, { outboundPort: 15001, inboundPort: 15006, excludeInboundPorts: [15090] });
    startSidecar(lab, servers[2].ns, file, 'reviews-v2');
    await eventually(() => servers.every((s) => curl(s.ns, 'http://127.0.0.1:8080/').includes(s.version)), 20_000, 'servers up');

    // Rules but no sidecar: refused at once, not a black hole.
    const refused = await client(cl, 'refused', VIP, '9080');
    assert.equal(refused.code, 'ECONNREFUSED');

    let sidecar = startSidecar(lab, cl, file, 'productpage');
    await eventually(() => curl(cl, 'http://127.0.0.1:15090/ready') === 'ready\n', 20_000, 'client sidecar ready');
    await eventually(() => curl(servers[2].ns, 'http://127.0.0.1:15090/ready') === 'ready\n', 20_000, 's3 sidecar ready');

    const split = await client(cl, 'http', `http://${VIP}:9080/`, '2000', '16');
    assert.equal((split.tally.v1 ?? 0) + (split.tally.v2 ?? 0), 2000, JSON.stringify(split));
    assert.ok(split.tally.v2 > 2000 * 0.07 && split.tally.v2 < 2000 * 0.13, JSON.stringify(split));

    const testers = await client(cl, 'http', `http://${VIP}:9080/`, '200', '8', 'x-user=tester');
    assert.deepEqual(testers.tally, { v2: 200 });

    const echo = await client(cl, 'tcp', ECHO_VIP, '7000', 'raw\u0001bytes\u0002through');
    assert.equal(echo.echo, 'raw\u0001bytes\u0002through');
    const ws = await client(cl, 'ws', `http://${VIP}:9080/chat`, 'ping-over-websocket');
    assert.equal(ws.head, 101);
    assert.equal(ws.echo, 'ping-over-websocket');

    const m = curl(cl, 'http://127.0.0.1:15090/metrics');
    assert.match(m, /meshwork_requests_total\{direction="outbound",source_workload="productpage",source_namespace="default",destination_service="reviews.default",destination_subset="v2",route="testers",response_code="200"\} 200/);
    assert.match(m, /meshwork_tcp_connections_opened_total\{direction="outbound",[^}]*destination_service="echo.default"\} [1-9]/);
    assert.match(curl(servers[2].ns, 'http://127.0.0.1:15090/metrics'), /meshwork_requests_total\{direction="inbound",source_workload="reviews-v2"[^}]*response_code="200"\} [1-9]/);

    // The policy file changes under load: 50/50 is in force quickly, no request fails.
    const stop1 = path.join(lab.tmp, 'stop1');
    const loop1 = client(cl, 'loop', `http://${VIP}:9080/`, stop1, '8');
    loop1.catch(() => {}); // awaited below; a failure before then must not surface as unhandled
    await eventually(() => /response_code="200"\} [1-9]\d{3}/.test(curl(cl, 'http://127.0.0.1:15090/metrics')), 20_000, 'load running');
    const t0 = Date.now();
    fs.writeFileSync(file, policyYaml(50, 50));
    await eventually(() => curl(cl, 'http://127.0.0.1:15090/config').includes('"weight": 50'), 10_000, 'new policy in force');
    const reloadMs = Date.now() - t0;
    fs.writeFileSync(stop1, '');
    const during = await loop1;
    assert.deepEqual(Object.keys(during.tally).sort(), ['v1', 'v2'], JSON.stringify(during));
    process.stdout.write(`# policy reload in force after ${reloadMs} ms\n`);

    // One v1 endpoint dies under load: retries hide it, its breaker opens, and closes once it is back.
    const stop2 = path.join(lab.tmp, 'stop2');
    const loop2 = client(cl, 'loop', `http://${VIP}:9080/`, stop2, '8');
    loop2.catch(() => {});
    procs.get('s2')!.kill('SIGKILL');
    const breaker = (state: number) => new RegExp(`meshwork_circuit_breaker_state\\{destination_service="reviews.default",endpoint="10\\.98\\.0\\.12:8080"\\} ${state}`);
    await eventually(() => breaker(1).test(curl(cl, 'http://127.0.0.1:15090/metrics')), 20_000, 'breaker of s2 open');
    startServer(servers[1]);
    await eventually(() => breaker(0).test(curl(cl, 'http://127.0.0.1:15090/metrics')), 20_000, 'breaker of s2 closed');
    fs.writeFileSync(stop2, '');
    const loss = await loop2;
    assert.deepEqual(Object.keys(loss.tally).sort(), ['v1', 'v2'], JSON.stringify(loss));

    // The sidecar dies: refused; it returns: traffic flows again. SIGTERM exits cleanly.
    sidecar.kill('SIGKILL');
    await eventually(async () => (await client(cl, 'refused', VIP, '9080')).code === 'ECONNREFUSED', 20_000, 'refused without sidecar');
    sidecar = startSidecar(lab, cl, file, 'productpage');
    await eventually(async () => (await client(cl, 'http', `http://${VIP}:9080/`, '10', '2')).tally.v1 > 0, 20_000, 'recovered');
    const exited = new Promise<number | null>((r) => sidecar.once('exit', (code) => r(code)));
    sidecar.kill('SIGTERM');
    assert.equal(await exited, 0);

    removeInterception(cl.path);
    removeInterception(cl.path); // already gone: fine
    assert.equal(hasInterception(cl.path), false);
  } finally {
    await lab.cleanup();
  }
});
