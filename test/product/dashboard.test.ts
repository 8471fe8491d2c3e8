import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium } from 'playwright-core';
import { createMemoryStore } from '../../store/memory';
import type { Store } from '../../store/types';
import { keys } from '../../store/keys';
import type { EndpointRecord, NodeRecord } from '../../store/records';
import type { Service, TrafficPolicy } from '../../policies/model';
import { createDashboard } from '../../agent/dashboard';
import { FakeMesh } from './fake-mesh';
import { repoRoot } from '../helpers/lab';

/** The browser's global inside page.waitForFunction callbacks (this project compiles without the DOM lib). */
declare const document: { querySelector(s: string): { getAttribute(n: string): string | null } | null; querySelectorAll(s: string): { length: number } };

const CHROMIUM = '/usr/bin/chromium';
const OUT = path.join(repoRoot, 'test-output');

const service = (name: string, app: string): Service => ({
  kind: 'Service', metadata: { name, namespace: 'default', labels: {} },
  spec: { type: 'ClusterIP', selector: { app }, ports: [{ port: 80, protocol: 'TCP', targetPort: 8080, appProtocol: 'http' }], clusterIP: `10.96.0.${name.length}` },
});
const reviewsPolicy = (v2: number): TrafficPolicy => ({
  kind: 'TrafficPolicy', metadata: { name: 'reviews', namespace: 'default', labels: {} },
  spec: {
    service: 'reviews', loadBalancer: { type: 'round-robin' },
    subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }],
    routes: [{ name: 'default', matches: [], backends: [{ subset: 'v1', weight: 100 - v2 }, { subset: 'v2', weight: v2 }] }],
    canary: { subset: 'v2', stableSubset: 'v1', steps: [10, 25, 50, 100], intervalMs: 30_000, minSuccessRatePercent: 99, maxP99LatencyMs: 500 },
  },
});
const endpoint = (pod: string, ip: string, labels: Record<string, string>, node: string): EndpointRecord => ({
  network: 'overlay', containerId: `c-${pod}`, ifname: 'eth0', namespace: 'default', pod, node, ips: [ip], labels, ready: true, mesh: true,
});

async function seed(store: Store): Promise<void> {
  for (const s of [service('frontend', 'frontend'), service('reviews', 'reviews'), service('ratings', 'ratings')]) {
    await store.put(keys.policy('Service', 'default', s.metadata.name), JSON.stringify(s));
  }
  await store.put(keys.policy('TrafficPolicy', 'default', 'reviews'), JSON.stringify(reviewsPolicy(10)));
  const eps = [
    endpoint('frontend-1', '10.244.1.2', { app: 'frontend' }, 'host-a'),
    endpoint('reviews-v1-1', '10.244.1.3', { app: 'reviews', version: 'v1' }, 'host-a'),
    endpoint('reviews-v2-1', '10.244.2.2', { app: 'reviews', version: 'v2' }, 'host-b'),
    endpoint('ratings-1', '10.244.2.3', { app: 'ratings' }, 'host-b'),
  ];
  for (const e of eps) await store.put(keys.endpoint(e.network, e.containerId, e.ifname), JSON.stringify(e));
  const nodes: NodeRecord[] = [
    { name: 'host-a', underlay: '192.168.50.1', vtepMac: '02:00:00:00:00:0a', podSubnets: { overlay: ['10.244.1.0/24'] }, dns: '10.244.1.1' },
    { name: 'host-b', underlay: '192.168.50.2', vtepMac: '02:00:00:00:00:0b', podSubnets: { overlay: ['10.244.2.0/24'] }, dns: '10.244.2.1' },
  ];
  for (const n of nodes) await store.put(keys.node(n.name), JSON.stringify(n));
}

test('dashboard in headless Chromium: live graph with rates, a canary weight change, service and network pages', { skip: !fs.existsSync(CHROMIUM) && 'chromium not installed' }, async () => {
  const store = createMemoryStore();
  const mesh = new FakeMesh();
  let tick = 0;
  // Every scrape the fake mesh has served more traffic, split by the policy's current weights.
  const traffic = async () => {
    tick++;
    const p = JSON.parse((await store.get(keys.policy('TrafficPolicy', 'default', 'reviews')))!.value) as TrafficPolicy;
    const w = p.spec.routes[0].backends.find((b) => b.subset === 'v2')!.weight;
    mesh.sidecar('loadgen').call('frontend.default', '', 40 + (tick % 5), 0.012);
    const fe = mesh.sidecar('frontend');
    fe.call('reviews.default', 'v1', Math.round((40 * (100 - w)) / 100), 0.02);
    fe.call('reviews.default', 'v2', Math.round((40 * w) / 100), 0.03);
    fe.call('reviews.default', 'v2', tick % 3 === 0 ? 1 : 0, 0.03, 503);
    mesh.sidecar('reviews').call('ratings.default', '', 30, 0.004);
    fe.breaker('reviews.default', '10.244.2.2:8080', tick > 2 ? 1 : 0, tick > 2);
  };
  const dash = createDashboard({ metrics: mesh.source(Date.now, traffic), store, sampleMs: 250 });
  const server = http.createServer((req, res) => { if (!dash(req, res)) res.writeHead(404).end('not mine\n'); });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-chromium-'));
  let ctx: Awaited<ReturnType<typeof chromium.launchPersistentContext>> | undefined;
  try {
    await seed(store);
    await dash.start();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dashboard`;

    // The handler answers only under its base path, redirects the bare base, and sends JSON errors.
    assert.equal((await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`)).status, 404);
    const redirect = await fetch(base, { redirect: 'manual' });
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get('location'), '/dashboard/');
    const missing = await fetch(`${base}/api/service?id=nope.default`);
    assert.equal(missing.status, 404);
    assert.match((await missing.json() as { error: string }).error, /no service "nope.default"/);

    fs.mkdirSync(OUT, { recursive: true });
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1400, height: 900 },
    });
    const page = ctx.pages()[0] ?? await ctx.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(`${base}/`);

    // Every service appears with a non-zero rate.
    for (const id of ['frontend.default', 'reviews.default', 'ratings.default']) {
      await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-rps')) > 0, `[data-service="${id}"]`, { timeout: 15_000 });
    }
    const rpsText = await page.locator('[data-service="reviews.default"] .stats').textContent();
    assert.match(rpsText ?? '', /^\d+(\.\d+)? rps · \d+(\.\d)?%$/);
    assert.ok(Number(await page.locator('[data-edge="loadgen.default->frontend.default"]').getAttribute('data-rps')) > 0, 'the load generator edge carries traffic');
    const split = page.locator('[data-edge="frontend.default->reviews.default"] .split');
    await split.filter({ hasText: 'v1 90% · v2 10%' }).waitFor({ timeout: 15_000 });
    assert.equal(await page.locator('[data-edge="frontend.default->reviews.default"] .canary').textContent(), 'canary v2: Pending');
    await page.screenshot({ path: path.join(OUT, 'dashboard-graph-before.png'), fullPage: true });

    // A canary step (as the controller writes it) shows up on the split edge.
    await store.put(keys.policy('TrafficPolicy', 'default', 'reviews'), JSON.stringify(reviewsPolicy(25)));
    await split.filter({ hasText: 'v1 75% · v2 25%' }).waitFor({ timeout: 15_000 });
    await page.locator('[data-canary="default/reviews"]').filter({ hasText: '25%' }).filter({ hasText: 'Pending' }).waitFor({ timeout: 15_000 });
    await page.screenshot({ path: path.join(OUT, 'dashboard-graph.png'), fullPage: true });

    // The service page: endpoints with subsets and breaker states, charts over time.
    await page.locator('[data-service="reviews.default"]').click();
    await page.locator('#service-head[data-service="reviews.default"]').waitFor({ timeout: 15_000 });
    const rows = page.locator('#endpoints tr');
    await page.waitForFunction(() => document.querySelectorAll('#endpoints tr').length === 3, undefined, { timeout: 15_000 });
    await rows.filter({ hasText: 'reviews-v2-1' }).filter({ hasText: 'open' }).waitFor({ timeout: 15_000 });
    assert.match((await rows.filter({ hasText: 'reviews-v1-1' }).textContent()) ?? '', /v1.*yes/);
    await page.waitForFunction(() => (document.querySelector('.chart polyline')?.getAttribute('points') ?? '').split(' ').length >= 3, undefined, { timeout: 15_000 });
    assert.match((await page.locator('#routes').textContent()) ?? '', /v1 75% · v2 25%/);
    await page.screenshot({ path: path.join(OUT, 'dashboard-service.png'), fullPage: true });

    // The network view: hosts with their subnets.
    await page.locator('#nav-network').click();
    await page.locator('#hosts tr', { hasText: 'host-b' }).filter({ hasText: '10.244.2.0/24' }).waitFor({ timeout: 15_000 });
    await page.screenshot({ path: path.join(OUT, 'dashboard-network.png'), fullPage: true });
    assert.deepEqual(pageErrors, []);
  } finally {
    await ctx?.close();
    await dash.stop();
    server.close();
    await store.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
});
