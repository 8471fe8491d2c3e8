/**
 * The sidecar's request path end to end, in-process, against real HTTP
 * servers on loopback (127.0.0.2..): splits, header routes, balancing,
 * retries with breakers, live policy swaps, timeouts, faults, pool limits,
 * mirroring, bad traffic and the metrics exposition.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createSidecar, type Sidecar } from '../../sidecar/sidecar';
import { memorySource } from '../../sidecar/sources';
import type { Snapshot } from '../../sidecar/catalog';
import type { TrafficPolicySpec } from '../../policies/model';
import { eventually } from '../helpers/lab';
import { canarySubsets, endpointsOf, get, load, policy, rawExchange, service, startBackends, tally } from './fixtures';

const HOST = 'reviews:9080';

async function setup(versions: string[], spec: Partial<TrafficPolicySpec>, opts: { headersTimeoutMs?: number } = {}) {
  const be = await startBackends(versions);
  const snap = (s: Partial<TrafficPolicySpec>): Snapshot => ({
    services: [service('reviews', 9080, be.port, { app: 'reviews' })],
    policies: [policy({ service: 'reviews', subsets: canarySubsets, ...s })],
    endpoints: endpointsOf(be.backends, 'reviews'),
  });
  const source = memorySource(snap(spec));
  const sc: Sidecar = createSidecar({ source, host: '127.0.0.1', outboundPort: 0, adminPort: 0, workload: 'productpage', namespace: 'default', headersTimeoutMs: opts.headersTimeoutMs, sniffTimeoutMs: 200 });
  await sc.start();
  return {
    sc, backends: be.backends, port: sc.ports.outbound,
    swap: (s: Partial<TrafficPolicySpec>) => source.set(snap(s)),
    async close() { await sc.stop(); await be.stopAll(); },
  };
}

const split = (v1: number, v2: number): Partial<TrafficPolicySpec> => ({
  routes: [{ name: 'canary', matches: [], backends: [{ subset: 'v1', weight: v1 }, { subset: 'v2', weight: v2 }] }],
});

async function metricsText(sc: Sidecar): Promise<string> {
  return (await get(sc.ports.admin!, 'admin', '/metrics', {}, { agent: false })).body;
}

test('a 90/10 split holds within a few percent over 3000 requests', async () => {
  const env = await setup(['v1', 'v1', 'v2'], split(90, 10));
  try {
    const rs = await load(3000, 16, () => get(env.port, HOST));
    const t = tally(rs);
    assert.equal((t.v1 ?? 0) + (t.v2 ?? 0), 3000, JSON.stringify(t));
    const share = t.v2 / 3000;
    assert.ok(share > 0.07 && share < 0.13, `v2 share ${share}`);
    const m = await metricsText(env.sc);
    assert.match(m, /meshwork_requests_total\{direction="outbound",source_workload="productpage",source_namespace="default",destination_service="reviews.default",destination_subset="v2",route="canary",response_code="200"\} \d+/);
  } finally { await env.close(); }
});

test('a header match sends every matching request to v2', async () => {
  const env = await setup(['v1', 'v1', 'v2'], {
    routes: [
      { name: 'testers', matches: [{ headers: [{ name: 'x-user', exact: 'tester' }] }], backends: [{ subset: 'v2', weight: 100 }] },
      { name: 'rest', matches: [], backends: [{ subset: 'v1', weight: 100 }] },
    ],
  });
  try {
    assert.deepEqual(tally(await load(200, 8, () => get(env.port, HOST, '/', { 'x-user': 'tester' }))), { v2: 200 });
    assert.deepEqual(tally(await load(200, 8, () => get(env.port, HOST))), { v1: 200 });
  } finally { await env.close(); }
});

test('round robin is even; least request avoids a slow endpoint; ring hash keeps a key on one endpoint', async () => {
  const env = await setup(['v1', 'v1', 'v1'], {});
  try {
    await load(300, 1, () => get(env.port, HOST));
    assert.deepEqual(env.backends.map((b) => b.hits), [100, 100, 100]);

    for (const b of env.backends) b.hits = 0;
    env.backends[0].delayMs = 200;
    env.swap({ loadBalancer: { type: 'least-request', choiceCount: 2 } });
    await load(300, 12, () => get(env.port, HOST));
    const [slow, a, b] = env.backends.map((x) => x.hits);
    assert.ok(slow < (a + b) / 6, `slow endpoint got ${slow} of ${slow + a + b}`);
    env.backends[0].delayMs = 0;

    env.swap({ loadBalancer: { type: 'ring-hash', hashOn: { header: 'x-user' }, minRingSize: 1024 } });
    for (const user of ['alice', 'bob', 'carol', 'dave']) {
      const pods = new Set((await load(30, 4, () => get(env.port, HOST, '/', { 'x-user': user }))).map((r) => (r as { headers: http.IncomingHttpHeaders }).headers['x-pod']));
      assert.equal(pods.size, 1, `${user} went to ${[...pods]}`);
    }
  } finally { await env.close(); }
});

test('an endpoint killed under load: no failed request, breaker opens, then closes after it returns', async () => {
  const env = await setup(['v1', 'v1', 'v1'], {
    retries: { attempts: 2, retryOn: ['connect-failure', 'reset', '5xx'], budgetPercent: 50, minRetriesPerSecond: 1000, perTryTimeoutMs: 2000 },
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 3, rollingCountTimeoutMs: 1000, resetTimeoutMs: 300 },
  });
  try {
    let stop = false;
    const failures: string[] = [];
    let done = 0;
    const loop = (async () => {
      while (!stop) {
        const rs = await load(20, 4, () => get(env.port, HOST));
        for (const r of rs) if (r instanceof Error || r.status !== 200) failures.push(r instanceof Error ? r.message : `${r.status} ${r.headers['x-meshwork-error'] ?? ''} ${r.body}`);
        done += rs.length;
      }
    })();
    await eventually(() => done > 100, 10_000, 'warm-up');
    const victim = env.backends[1];
    await victim.stop();
    await eventually(async () => /meshwork_circuit_breaker_state\{[^}]*endpoint="127\.0\.0\.3:\d+"\} 1/.test(await metricsText(env.sc)), 10_000, 'breaker open in metrics');
    const eps = JSON.parse((await get(env.sc.ports.admin!, 'admin', '/endpoints', {}, { agent: false })).body);
    assert.ok(['open', 'half-open'].includes(eps[0].endpoints.find((e: { pod: string }) => e.pod === 'default/pod1').breaker));
    await victim.start();
    await eventually(async () => /meshwork_circuit_breaker_state\{[^}]*endpoint="127\.0\.0\.3:\d+"\} 0/.test(await metricsText(env.sc)), 10_000, 'breaker closed again');
    const before = victim.hits;
    await eventually(() => victim.hits > before + 10, 10_000, 'victim serving again');
    stop = true;
    await loop;
    assert.deepEqual(failures, []);
    assert.match(await metricsText(env.sc), /meshwork_retries_total\{[^}]*\} \d+/);
  } finally { await env.close(); }
});

test('a policy changed mid-load (90/10 to 50/50) applies to the next request with no failed request', async () => {
  const env = await setup(['v1', 'v1', 'v2'], split(90, 10));
  try {
    // One load of 3000 requests, 8 at a time; the policy is swapped when request 1000 starts.
    const rs = await load(3000, 8, (i) => {
      if (i === 1000) env.swap(split(50, 50));
      return get(env.port, HOST);
    });
    const t = tally(rs);
    assert.equal((t.v1 ?? 0) + (t.v2 ?? 0), 3000, JSON.stringify(t));
    const before = tally(rs.slice(0, 1000)).v2 / 1000;
    const after = tally(rs.slice(1000)).v2 / 2000;
    assert.ok(before > 0.06 && before < 0.14, `before swap v2 share ${before}`);
    assert.ok(after > 0.45 && after < 0.55, `after swap v2 share ${after}`);
  } finally { await env.close(); }
});

test('timeouts, fault injection and connection-pool overflow answer with the right status and header', async () => {
  const env = await setup(['v1'], { timeoutMs: 100 });
  try {
    env.backends[0].delayMs = 1000;
    const slow = await get(env.port, HOST, '/', {}, { agent: false });
    assert.equal(slow.status, 504);
    assert.equal(slow.headers['x-meshwork-error'], 'request-timeout');
    env.backends[0].delayMs = 0;

    env.swap({ fault: { abort: { httpStatus: 418, percentage: 100 } } });
    const aborted = await get(env.port, HOST, '/', {}, { agent: false });
    assert.equal(aborted.status, 418);
    assert.equal(aborted.headers['x-meshwork-fault'], 'abort');

    env.swap({ connectionPool: { maxConnections: 1, maxPendingRequests: 1 } });
    env.backends[0].delayMs = 300;
    const rs = await load(6, 6, () => get(env.port, HOST, '/', {}, { agent: false }));
    const over = rs.filter((r) => !(r instanceof Error) && r.status === 503 && r.headers['x-meshwork-overflow'] === 'pending');
    const ok = rs.filter((r) => !(r instanceof Error) && r.status === 200);
    assert.equal(ok.length, 2, JSON.stringify(tally(rs)));
    assert.equal(over.length, 4, JSON.stringify(tally(rs)));
  } finally { await env.close(); }
});

test('mirroring copies a share of requests to another subset without changing the responses', async () => {
  const env = await setup(['v1', 'v2'], {
    routes: [{ name: 'mirrored', matches: [], backends: [{ subset: 'v1', weight: 100 }], mirror: { subset: 'v2', percentage: 100 } }],
  });
  try {
    const t = tally(await load(100, 4, () => get(env.port, HOST)));
    assert.deepEqual(t, { v1: 100 });
    await eventually(() => env.backends[1].shadowHits === 100, 5000, 'mirrored copies');
    assert.equal(env.backends[1].hits, 0);
  } finally { await env.close(); }
});

test('WebSocket upgrades pass through the sidecar (raw TCP: see mesh.test.ts, it needs an original destination)', async () => {
  const ws = http.createServer();
  ws.on('upgrade', (_req, sock, head) => {
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    if (head.length) sock.write(head);
    sock.pipe(sock);
  });
  await new Promise<void>((r) => ws.listen(0, '127.0.0.3', r));
  const wsPort = (ws.address() as net.AddressInfo).port;
  const source = memorySource({
    services: [service('chat', 80, wsPort, { app: 'chat' })],
    policies: [],
    endpoints: endpointsOf([{ name: 'w', version: 'v1', address: '127.0.0.3' }], 'chat'),
  });
  const sc = createSidecar({ source, host: '127.0.0.1', outboundPort: 0, adminPort: 0, workload: 'c', namespace: 'default', sniffTimeoutMs: 100 });
  await sc.start();
  try {
    const got = await rawExchange(sc.ports.outbound, 'GET /chat HTTP/1.1\r\nHost: chat:80\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nping', (t) => t.endsWith('ping'));
    assert.match(got, /^HTTP\/1\.1 101/);
  } finally {
    await sc.stop();
    ws.close();
  }
});

test('bad traffic is rejected or timed out while others are served', async () => {
  const env = await setup(['v1'], {}, { headersTimeoutMs: 500 });
  try {
    const malformed = await rawExchange(env.port, 'GARBAGE\r\n\r\n', undefined);
    assert.ok(malformed === '' || /^HTTP\/1\.1 400/.test(malformed), malformed);
    const bad = await rawExchange(env.port, 'GET / HTTP/1.1\r\nHost: reviews:9080\r\nBad Header\r\n\r\n');
    assert.match(bad, /^HTTP\/1\.1 400/);
    const big = await rawExchange(env.port, `GET / HTTP/1.1\r\nHost: reviews:9080\r\nx-big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
    assert.match(big, /^HTTP\/1\.1 431/);
    // Slowloris: headers trickle in a byte at a time; the connection is cut after headersTimeout.
    const slow = net.connect(env.port, '127.0.0.1');
    let closed = false;
    let answer = '';
    slow.on('data', (d) => { answer += d; });
    slow.on('close', () => { closed = true; });
    slow.on('error', () => {});
    const head = 'GET / HTTP/1.1\r\nHost: reviews:9080\r\nx-slow: ';
    let i = 0;
    slow.write(head);
    const drip = setInterval(() => { if (!closed) slow.write(String(i++ % 10)); }, 50);
    try {
      const served = await load(50, 4, () => get(env.port, HOST));
      assert.deepEqual(tally(served), { v1: 50 });
      await eventually(() => closed, 10_000, 'slow client cut off');
      assert.match(answer, /^HTTP\/1\.1 408/);
    } finally { clearInterval(drip); slow.destroy(); }
    const rss = process.memoryUsage().rss;
    assert.ok(rss < 512 * 1024 * 1024, `rss ${rss}`);
  } finally { await env.close(); }
});

test('the metrics exposition passes promtool check metrics', { skip: spawnSync('which', ['promtool']).status !== 0 && 'promtool not installed' }, async () => {
  const env = await setup(['v1', 'v2'], split(50, 50));
  try {
    await load(50, 4, () => get(env.port, HOST));
    const text = await metricsText(env.sc);
    assert.match(text, /meshwork_request_duration_seconds_bucket/);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mw-sidecar-')), 'm.txt');
    fs.writeFileSync(file, text);
    const r = spawnSync('sh', ['-c', `promtool check metrics < ${file}`], { encoding: 'utf8' });
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  } finally { await env.close(); }
});


test('a client that leaves mid-request is not retried for, and is counted with response code 0', async () => {
  const env = await setup(['v1', 'v1'], {
    retries: { attempts: 2, perTryTimeoutMs: 5000, retryOn: ['connect-failure', 'reset', '5xx'], budgetPercent: 100, minRetriesPerSecond: 100 },
  });
  try {
    for (const b of env.backends) b.delayMs = 300;
    // Raw socket: send one request, hang up before the slow answer.
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(env.port, '127.0.0.1', () => s.write(`GET /gone HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`));
      s.on('error', reject);
      setTimeout(() => { s.destroy(); resolve(); }, 100);
    });
    await eventually(async () => /response_code="0"\} 1/.test(await metricsText(env.sc)), 5000, 'request counted with code 0');
    await new Promise((r) => setTimeout(r, 500)); // long enough for a retry to have reached a backend
    const hits = env.backends.reduce((n, b) => n + b.hits, 0);
    assert.equal(hits, 1, 'the abandoned request reached one backend once');
    assert.doesNotMatch(await metricsText(env.sc), /meshwork_retries_total\{/);
  } finally { await env.close(); }
});
