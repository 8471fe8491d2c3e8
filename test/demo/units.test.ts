/**
 * The demo's pure parts, without root: the plan (names, spread, policies that
 * validate), the story's sequence driven by fake decisions and observations,
 * the view's numbers, and the run registry's crash detection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allNamespaces, makePlan, policyYaml } from '../../demo/plan';
import { loadPolicies } from '../../policies/load';
import { createStory, type StoryActions } from '../../demo/story';
import type { Observation, Row } from '../../demo/observe';
import { rowsBetween } from '../../demo/observe';
import { renderLine, renderScreen, fmtPct, fmtMs } from '../../demo/view';
import { newRunId, ownerAlive, processStart } from '../../demo/runs';
import type { Scrape } from '../../canary/source';

test('plan: unique namespaces under the run id, pods spread over hosts, default 3 hosts', () => {
  const id = 'mwdabc123';
  for (const hosts of [1, 2, 3, 5]) {
    const p = makePlan(id, hosts);
    const names = allNamespaces(p);
    assert.equal(new Set(names).size, names.length);
    assert.ok(names.every((n) => n.startsWith(`${id}-`)));
    assert.equal(p.hosts.length, hosts);
    assert.equal(new Set(p.pods.map((x) => x.host.name)).size, Math.min(hosts, p.pods.length));
    assert.equal(new Set(p.hosts.map((h) => h.underlayIp)).size, hosts);
    for (const h of p.hosts) assert.ok(h.underlayPort.length <= 15);
  }
  const p = makePlan(id, 3);
  assert.deepEqual(p.pods.filter((x) => x.app === 'reviews').map((x) => x.version).sort(), ['v1', 'v1', 'v2']);
  assert.deepEqual(p.pods.find((x) => x.role === 'loadgen')!.calls, ['http://frontend:9080/']);
  for (const bad of [0, -1, 1.5, 21]) assert.throws(() => makePlan(id, bad), /--hosts/);
  assert.match(newRunId(), /^mwd[0-9a-f]{6}$/);
});

test('plan: the demo policies validate with the policy loader (90/10, canary, retries, breaker, outlier)', () => {
  const res = loadPolicies([{ file: 'bookstore.yaml', text: policyYaml({ stepSeconds: 4 }) }]);
  assert.deepEqual(res.issues, []);
  const docs = res.documents.map((d) => d.document);
  assert.deepEqual(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort(),
    ['Service/frontend', 'Service/ratings', 'Service/reviews', 'TrafficPolicy/ratings', 'TrafficPolicy/reviews']);
  const reviews: any = docs.find((d) => d.kind === 'TrafficPolicy' && d.metadata.name === 'reviews');
  assert.deepEqual(reviews.spec.routes[0].backends.map((b: any) => [b.subset, b.weight]), [['v1', 90], ['v2', 10]]);
  assert.equal(reviews.spec.canary.subset, 'v2');
  assert.ok(reviews.spec.circuitBreaker && reviews.spec.outlierDetection && reviews.spec.retries);
});

function fakeActions() {
  const said: Array<{ msg: string; ev: Record<string, unknown> }> = [];
  const calls: string[] = [];
  const act: StoryActions = {
    say: (msg, ev) => said.push({ msg, ev }),
    failCanary: async (rate) => { calls.push(`fail ${rate}`); },
    killEndpoint: (pod) => { calls.push(`kill ${pod}`); },
  };
  return { said, calls, act, steps: () => said.map((s) => s.ev.step) };
}

const row = (service: string, subset: string, rps: number, successPercent: number | null): Row => ({ service, subset, rps, successPercent, p99Ms: 10 });
const obs = (rows: Row[], endpoints: Observation['endpoints'] = []): Observation => ({ at: 0, rows, endpoints, errors: [] });

test('story: promote until the fail weight, fail the canary, wait for the rollback to take effect, kill, see the breaker', async () => {
  const f = fakeActions();
  const s = createStory({ failAtWeight: 50, failRate: 0.5, victim: 'reviews-v1-a', canarySubset: 'v2' }, f.act);
  const healthy = { successRatePercent: 100, p99Ms: 12 };
  await s.onCanary({ action: 'hold', fromWeight: 10, toWeight: 10, reason: 'first interval' });
  await s.onCanary({ action: 'promote', fromWeight: 10, toWeight: 25, reason: 'ok', canary: healthy });
  assert.equal(s.phase, 'promoting');
  assert.deepEqual(f.calls, []);
  assert.match(f.said[0].msg, /canary reviews v2: 10% → 25% \(success 100%, p99 12 ms\)/);
  await s.onCanary({ action: 'promote', fromWeight: 25, toWeight: 50, reason: 'ok', canary: healthy });
  assert.equal(s.phase, 'failing');
  assert.deepEqual(f.calls, ['fail 0.5']);
  // Observations before the rollback change nothing.
  s.onObservation(obs([row('frontend', 'all', 10, 70)]));
  await s.onCanary({ action: 'rollback', fromWeight: 50, toWeight: 0, reason: 'success 40% < 95%', canary: { successRatePercent: 40, p99Ms: 9 } });
  assert.equal(s.phase, 'recovering');
  s.onObservation(obs([row('frontend', 'all', 10, 80), row('reviews', 'v2', 3, 50)]));
  assert.deepEqual(f.calls, ['fail 0.5'], 'no kill while v2 still gets traffic');
  s.onObservation(obs([row('frontend', 'all', 10, 100), row('reviews', 'v1', 10, 100)]));
  assert.deepEqual(f.calls, ['fail 0.5', 'kill reviews-v1-a']);
  assert.equal(s.phase, 'watching-breaker');
  const ep = (breaker: string, ejected: boolean) => [{ service: 'reviews', address: '10.244.1.3:9080', pod: 'default/reviews-v1-a', subsets: ['v1'], breaker, ejected }];
  s.onObservation(obs([row('frontend', 'all', 10, 100)], ep('closed', false)));
  assert.equal(s.phase, 'watching-breaker');
  s.onObservation(obs([row('frontend', 'all', 10, 100)], ep('open', false)));
  assert.equal(s.phase, 'done');
  assert.deepEqual(f.steps(), ['canary-promoted', 'canary-promoted', 'canary-failing', 'canary-rolled-back', 'recovered', 'endpoint-killed', 'breaker-open', 'done']);
  const b = f.said.find((x) => x.ev.step === 'breaker-open')!;
  assert.equal(b.ev.frontendSuccessPercent, 100);
  assert.match(b.msg, /reviews-v1-a: breaker open .* after it died; users' success rate 100%/);
});

test('story: a busy machine that never shows a clean second still moves on', async () => {
  const f = fakeActions();
  const s = createStory({ failAtWeight: 25, failRate: 0.3, victim: 'x', canarySubset: 'v2' }, f.act);
  await s.onCanary({ action: 'promote', fromWeight: 10, toWeight: 25, reason: 'ok' });
  await s.onCanary({ action: 'rollback', fromWeight: 25, toWeight: 0, reason: 'bad' });
  for (let i = 0; i < 14; i++) s.onObservation(obs([row('frontend', 'all', 10, 90)]));
  assert.equal(s.phase, 'recovering');
  s.onObservation(obs([row('frontend', 'all', 10, 90)]));
  assert.equal(s.phase, 'watching-breaker');
});

function scrape(at: number, samples: Array<[string, Record<string, string>, number]>): Scrape {
  return { at, targets: [{ target: 't', samples: samples.map(([name, labels, value]) => ({ name, labels, value })) }] };
}

test('view: rates, success and p99 per service and subset from two scrapes of the outbound series', () => {
  const L = (subset: string, code: string) => ({ direction: 'outbound', destination_service: 'reviews.default', destination_subset: subset, response_code: code });
  const H = (subset: string, le: string) => ({ direction: 'outbound', destination_service: 'reviews.default', destination_subset: subset, le });
  const prev = scrape(1000, [
    ['meshwork_requests_total', L('v1', '200'), 100], ['meshwork_requests_total', L('v2', '200'), 10], ['meshwork_requests_total', L('v2', '500'), 0],
    ['meshwork_request_duration_seconds_bucket', H('v2', '0.01'), 0], ['meshwork_request_duration_seconds_bucket', H('v2', '0.1'), 10], ['meshwork_request_duration_seconds_bucket', H('v2', '+Inf'), 10],
    ['meshwork_requests_total', { direction: 'inbound', destination_service: 'frontend.default', response_code: '200' }, 5],
  ]);
  const cur = scrape(3000, [
    ['meshwork_requests_total', L('v1', '200'), 140], ['meshwork_requests_total', L('v2', '200'), 16], ['meshwork_requests_total', L('v2', '500'), 4],
    ['meshwork_request_duration_seconds_bucket', H('v2', '0.01'), 0], ['meshwork_request_duration_seconds_bucket', H('v2', '0.1'), 20], ['meshwork_request_duration_seconds_bucket', H('v2', '+Inf'), 20],
    ['meshwork_requests_total', { direction: 'inbound', destination_service: 'frontend.default', response_code: '200' }, 50],
  ]);
  const rows = rowsBetween(prev, cur);
  assert.deepEqual(rows.map((r) => [r.service, r.subset, r.rps, r.successPercent]), [['reviews', 'v1', 20, 100], ['reviews', 'v2', 5, 60]]);
  const p99 = rows[1].p99Ms!;
  assert.ok(p99 > 10 && p99 <= 100, `p99 interpolated inside the 10..100 ms bucket: ${p99}`);

  const st = { title: 'demo', dashboardUrl: 'http://127.0.0.1:1/dashboard/', elapsedSeconds: 12.4, canaryWeight: 25, canaryPhase: 'Progressing', log: ['canary reviews v2: 10% → 25%'] };
  const o = obs(rows, [{ service: 'reviews', address: '10.0.0.1:9080', pod: 'default/reviews-v1-a', subsets: ['v1'], breaker: 'open', ejected: true }]);
  const screen = renderScreen(o, st);
  assert.ok(screen.startsWith('\x1b[H\x1b[2J'), 'redraws from the top');
  assert.match(screen, /http:\/\/127\.0\.0\.1:1\/dashboard\//);
  assert.match(screen, /split reviews: v1 75% \/ v2 25%/);
  assert.match(screen, /reviews-v1-a .*open/);
  const line = renderLine(o, st);
  assert.doesNotMatch(line, /\x1b/);
  assert.match(line, /reviews\/v2 5\.0\/s 60\.0% p99/);
  assert.match(line, /breakers: default\/reviews-v1-a open\+ejected/);
  assert.equal(fmtPct(null), '—');
  assert.equal(fmtPct(99.99), '100%');
  assert.equal(fmtMs(4.25), '4.3 ms');
});

test('runs: a live owner is recognised by pid and start time; a recycled pid is not', () => {
  const start = processStart(process.pid)!;
  assert.ok(start);
  const rec = { id: 'mwd000000', pid: process.pid, pidStart: start, startedAt: '', dir: '/nonexistent', namespaces: [], etcNetns: [] };
  assert.equal(ownerAlive(rec), true);
  assert.equal(ownerAlive({ ...rec, pidStart: `${start}1` }), false);
  assert.equal(ownerAlive({ ...rec, pid: 2 ** 22 + 1 }), false);
});
