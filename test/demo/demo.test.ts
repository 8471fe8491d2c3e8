/**
 * `meshwork demo` end to end, as a user runs it: the story in short mode, the
 * dashboard it prints opened in headless Chromium while its traffic runs,
 * Ctrl-C, and nothing left behind. Assertions read the demo's own
 * --json-events, never the ANSI view.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { isRoot, NEEDS_ROOT, repoRoot, sh } from '../helpers/lab';
import { leftovers, machineState, nothing, rootChanges, startDemo, type DemoEvent } from './harness';

declare const document: { querySelector(s: string): { getAttribute(n: string): string | null; textContent: string | null } | null };

const CHROMIUM = '/usr/bin/chromium';
const OUT = path.join(repoRoot, 'test-output');

interface Row { service: string; subset: string; rps: number; successPercent: number | null }
const rowsOf = (e: DemoEvent): Row[] => e.rows ?? [];

test('meshwork demo: canary promoted then rolled back, a killed endpoint hidden by breaker and retries, dashboard live in Chromium, nothing left behind', { skip: !isRoot && NEEDS_ROOT, timeout: 420_000 }, async (t) => {
  const before = machineState();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mwdemo-test-'));
  const demo = startDemo(dir, 'story', ['--hosts', '2', '--step-seconds', '4', '--rate', '10', '--duration', '300']);
  let id = '';
  try {
    const run = await demo.waitFor((e) => e.type === 'run', 30_000, 'the run event');
    id = run.id;
    assert.match(id, /^mwd[0-9a-f]{6}$/);
    const ready = await demo.waitFor((e) => e.type === 'ready', 180_000, 'the cluster to be ready');
    const url: string = ready.dashboard;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/dashboard\/$/);
    assert.match(demo.output(), new RegExp(`dashboard: ${url.replace(/[.?*+()[\]]/g, '\\$&')}`), 'the user is told where the dashboard is');
    assert.equal(ready.pods.length, 6);
    assert.ok(new Set(ready.pods.map((p: { host: string }) => p.host)).size === 2, 'pods are spread over both hosts');

    await t.test('the dashboard the demo printed, in headless Chromium, shows live rates and a canary weight change', { skip: !fs.existsSync(CHROMIUM) && 'chromium not installed' }, async () => {
      const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mwdemo-chromium-'));
      const ctx = await chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1400, height: 900 },
      });
      try {
        const page = ctx.pages()[0] ?? await ctx.newPage();
        const pageErrors: string[] = [];
        page.on('pageerror', (e) => pageErrors.push(String(e)));
        await page.goto(url);
        for (const svc of ['frontend.default', 'reviews.default', 'ratings.default']) {
          await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-rps')) > 0, `[data-service="${svc}"]`, { timeout: 60_000 });
        }
        const split = '[data-edge="frontend.default->reviews.default"] .split:not(.canary)';
        await page.waitForFunction((sel) => /v2 \d+%/.test(document.querySelector(sel)?.textContent ?? ''), split, { timeout: 30_000 });
        const first = (await page.locator(split).textContent()) ?? '';
        fs.mkdirSync(OUT, { recursive: true });
        await page.screenshot({ path: path.join(OUT, 'demo-dashboard-before.png'), fullPage: true });
        // The canary controller moves the weight every few seconds: the page must follow without a reload.
        await page.waitForFunction(([sel, was]) => {
          const now = document.querySelector(sel)?.textContent ?? '';
          return /v2 \d+%/.test(now) && now !== was;
        }, [split, first] as const, { timeout: 90_000 });
        const later = (await page.locator(split).textContent()) ?? '';
        assert.notEqual(later, first);
        await page.screenshot({ path: path.join(OUT, 'demo-dashboard.png'), fullPage: true });
        assert.deepEqual(pageErrors, []);
      } finally {
        await ctx.close();
        fs.rmSync(userDataDir, { recursive: true, force: true });
      }
    });

    // The story, step by step.
    const breaker = await demo.waitFor((e) => e.step === 'breaker-open', 240_000, 'the breaker to open for the killed endpoint');
    const events = demo.events();
    const idx = (step: string) => events.findIndex((e) => e.step === step);
    assert.ok(idx('canary-promoted') >= 0, 'the canary is promoted');
    assert.ok(idx('canary-failing') > idx('canary-promoted'), 'v2 starts failing after being promoted');
    const rollback = events[idx('canary-rolled-back')];
    assert.ok(rollback && idx('canary-rolled-back') > idx('canary-failing'), 'the failing canary is rolled back');
    assert.equal(rollback.toWeight, 0);
    const promotions = events.filter((e) => e.step === 'canary-promoted');
    assert.ok(promotions.some((e) => e.toWeight >= 50), `promoted step by step up to 50% (got ${promotions.map((e) => e.toWeight)})`);
    assert.ok(idx('endpoint-killed') > idx('canary-rolled-back'));
    assert.ok(breaker.breaker === 'open' || breaker.ejected === true);

    // What users saw: both versions served, and the load generator's calls succeeded.
    const stats = events.filter((e) => e.type === 'stats');
    const served = (subset: string) => stats.some((s) => rowsOf(s).some((r) => r.service === 'reviews' && r.subset === subset && r.rps > 0));
    assert.ok(served('v1') && served('v2'), 'both reviews v1 and v2 received traffic');
    const fe = (from: number, to: number) => {
      const rows = events.slice(from, to).filter((e) => e.type === 'stats').flatMap(rowsOf).filter((r) => r.service === 'frontend' && r.successPercent !== null);
      return rows.length ? rows.reduce((a, r) => a + r.successPercent!, 0) / rows.length : null;
    };
    const beforeFailing = fe(0, idx('canary-failing'));
    assert.ok(beforeFailing !== null && beforeFailing >= 98, `users' success while the canary is healthy: ${beforeFailing}%`);
    // Killing a v1 endpoint: retries and the breaker hide it.
    const afterKill = fe(idx('endpoint-killed'), events.length);
    assert.ok(afterKill !== null && afterKill >= 97, `users' success after the endpoint died: ${afterKill}%`);

    // Ctrl-C removes everything.
    demo.child.kill('SIGINT');
    const exit = await demo.exited();
    assert.equal(exit.code, 0, demo.output().slice(-2000));
    const removed = demo.events().find((e) => e.type === 'removed');
    assert.deepEqual(removed?.problems, []);
    assert.match(demo.output(), /nothing left behind/);
  } finally {
    if (demo.child.exitCode === null && demo.child.signalCode === null) {
      demo.child.kill('SIGINT');
      await Promise.race([demo.exited(), new Promise((r) => setTimeout(r, 30_000))]);
      demo.child.kill('SIGKILL');
    }
    // A failed assertion must not leave the run behind for the next test.
    if (id) sh(process.execPath, [path.join(repoRoot, 'bin', 'meshwork'), 'demo', '--down', id], { allowFail: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const after = machineState();
  assert.deepEqual(leftovers(id, after), nothing);
  assert.deepEqual(rootChanges(before, after), { links: [], tables: [] });
});
