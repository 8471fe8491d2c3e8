import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, validateCanarySpec, CanarySpecError, type Analysis, type Phase } from '../../canary/decide';
import type { CanarySpec } from '../../policies/model';
import type { TrafficStats } from '../../canary/series';

const spec: CanarySpec = { subset: 'v2', stableSubset: 'v1', steps: [10, 25, 50, 100], intervalMs: 10_000, minSuccessRatePercent: 99, maxP99LatencyMs: 500 };
const stats = (requests: number, failures: number, p99Ms: number | null): TrafficStats =>
  ({ requests, failures, successRatePercent: requests ? (100 * (requests - failures)) / requests : null, p99Ms });
const healthy = stats(100, 0, 40);
const an = (canary: TrafficStats, complete = true): Analysis => ({ canary, stable: stats(900, 0, 35), complete, missing: complete ? undefined : '1 of 3 target(s): x' });

const table: Array<{ name: string; phase?: Phase; weight: number; analysis?: Analysis; minRequests?: number; action: string; to: number; phaseAfter: Phase; reason: RegExp }> = [
  { name: 'weight 0 starts at the first step without analysis', weight: 0, action: 'start', to: 10, phaseAfter: 'Progressing', reason: /v2 gets 10%/ },
  { name: 'no baseline yet: hold', weight: 10, action: 'hold', to: 10, phaseAfter: 'Progressing', reason: /first interval/ },
  { name: 'healthy at 10 promotes to 25', weight: 10, analysis: an(healthy), action: 'promote', to: 25, phaseAfter: 'Progressing', reason: /10% -> 25%/ },
  { name: 'a weight between steps promotes to the next step above', weight: 30, analysis: an(healthy), action: 'promote', to: 50, phaseAfter: 'Progressing', reason: /30% -> 50%/ },
  { name: 'healthy at 50 promotes to 100', weight: 50, analysis: an(healthy), action: 'promote', to: 100, phaseAfter: 'Progressing', reason: /-> 100%/ },
  { name: 'healthy at 100 completes', weight: 100, analysis: an(healthy), action: 'complete', to: 100, phaseAfter: 'Succeeded', reason: /complete/ },
  { name: 'success rate below the minimum rolls back', weight: 25, analysis: an(stats(100, 2, 40)), action: 'rollback', to: 0, phaseAfter: 'RolledBack', reason: /98% < 99%.*2\/100 failed.*stable v1: 100%/ },
  { name: 'exactly the minimum success rate passes', weight: 25, analysis: an(stats(100, 1, 40)), action: 'promote', to: 50, phaseAfter: 'Progressing', reason: /healthy/ },
  { name: 'p99 above the maximum rolls back', weight: 50, analysis: an(stats(100, 0, 812)), action: 'rollback', to: 0, phaseAfter: 'RolledBack', reason: /p99 of v2 812ms > 500ms \(stable v1: 35ms\)/ },
  { name: 'p99 exactly at the maximum passes', weight: 50, analysis: an(stats(100, 0, 500)), action: 'promote', to: 100, phaseAfter: 'Progressing', reason: /healthy/ },
  { name: 'no canary requests: hold', weight: 10, analysis: an(stats(0, 0, null)), action: 'hold', to: 10, phaseAfter: 'Progressing', reason: /only 0 request/ },
  { name: 'too few requests for minRequests: hold', weight: 10, analysis: an(stats(5, 0, 10)), minRequests: 20, action: 'hold', to: 10, phaseAfter: 'Progressing', reason: /only 5 request\(s\).*need 20/ },
  { name: 'requests without latency data: hold', weight: 10, analysis: an(stats(50, 0, null)), action: 'hold', to: 10, phaseAfter: 'Progressing', reason: /no latency/ },
  { name: 'incomplete metrics never promote', weight: 10, analysis: an(healthy, false), action: 'hold', to: 10, phaseAfter: 'Progressing', reason: /incomplete.*1 of 3/ },
  { name: 'incomplete metrics still roll back a breach', weight: 10, analysis: an(stats(10, 5, 40), false), action: 'rollback', to: 0, phaseAfter: 'RolledBack', reason: /50% < 99%/ },
  { name: 'a rolled-back rollout does nothing', phase: 'RolledBack', weight: 0, analysis: an(healthy), action: 'none', to: 0, phaseAfter: 'RolledBack', reason: /RolledBack/ },
  { name: 'a succeeded rollout does nothing', phase: 'Succeeded', weight: 100, analysis: an(stats(100, 50, 900)), action: 'none', to: 100, phaseAfter: 'Succeeded', reason: /Succeeded/ },
];

const relative: CanarySpec = { ...spec, maxSuccessRateDropPercent: 0.5, maxP99LatencyRatio: 2 };
const vsStable = (canary: TrafficStats, stable: TrafficStats): Analysis => ({ canary, stable, complete: true });
for (const [name, analysis, action, reason] of [
  ['a canary trailing the stable success rate by more than the allowed drop rolls back', vsStable(stats(1000, 9, 40), stats(1000, 0, 35)), 'rollback', /99.1% trails \(stable v1: 100%\) by more than 0.5 points/],
  ['the same success rate passes when the stable subset fails as much', vsStable(stats(1000, 9, 40), stats(1000, 8, 35)), 'promote', /healthy/],
  ['a p99 above the allowed multiple of the stable p99 rolls back', vsStable(stats(100, 0, 90), stats(900, 0, 40)), 'rollback', /90ms is more than 2x \(stable v1: 40ms\)/],
  ['a p99 within the multiple passes', vsStable(stats(100, 0, 80), stats(900, 0, 40)), 'promote', /healthy/],
  ['no stable data: only the absolute thresholds apply', vsStable(stats(100, 0, 80), stats(0, 0, null)), 'promote', /healthy/],
] as Array<[string, Analysis, string, RegExp]>) {
  test(`decide relative to stable: ${name}`, () => {
    const d = decide({ spec: { ...relative, minSuccessRatePercent: 99 }, phase: 'Progressing', weight: 25, analysis });
    assert.equal(d.action, action);
    assert.match(d.reason, reason);
  });
}

for (const row of table) {
  test(`decide: ${row.name}`, () => {
    const d = decide({ spec, phase: row.phase ?? 'Progressing', weight: row.weight, analysis: row.analysis, minRequests: row.minRequests });
    assert.equal(d.action, row.action);
    assert.equal(d.fromWeight, row.weight);
    assert.equal(d.toWeight, row.to);
    assert.equal(d.phase, row.phaseAfter);
    assert.match(d.reason, row.reason);
  });
}

test('decide: a healthy canary walks every step to Succeeded', () => {
  let weight = 0;
  let phase: Phase = 'Progressing';
  const seen: number[] = [];
  for (let i = 0; i < 10 && phase === 'Progressing'; i++) {
    const d = decide({ spec, phase, weight, analysis: weight ? an(healthy) : undefined });
    weight = d.toWeight;
    phase = d.phase;
    seen.push(weight);
  }
  assert.deepEqual(seen, [10, 25, 50, 100, 100]);
  assert.equal(phase, 'Succeeded');
});

const bad: Array<[string, Partial<CanarySpec>, RegExp]> = [
  ['same subsets', { stableSubset: 'v2' }, /both "v2"/],
  ['empty steps', { steps: [] }, /steps is empty/],
  ['descending steps', { steps: [50, 25, 100] }, /steps\[1\] \(25\) is not above/],
  ['last step not 100', { steps: [10, 50] }, /last step is 50/],
  ['fractional step', { steps: [10.5, 100] }, /steps\[0\] is 10.5/],
  ['zero interval', { intervalMs: 0 }, /intervalMs is 0/],
  ['success rate out of range', { minSuccessRatePercent: 120 }, /minSuccessRatePercent is 120/],
  ['no latency bound', { maxP99LatencyMs: 0 }, /maxP99LatencyMs is 0/],
];
for (const [name, patch, re] of bad) {
  test(`validateCanarySpec rejects ${name}`, () => {
    assert.throws(() => validateCanarySpec({ ...spec, ...patch }), (e: unknown) => e instanceof CanarySpecError && e.code === 'ECANARYSPEC' && re.test(e.message));
  });
}
test('validateCanarySpec accepts a good spec', () => validateCanarySpec(spec));
