/**
 * The canary decision, pure: given the rollout's state, its spec and what the
 * last interval measured, what to do next. No I/O and no clock, so every rule
 * is a row of a table test. The controller (controller.ts) does the I/O.
 */
import type { CanarySpec } from '../policies/model';
import { MeshworkError } from '../lib/errors';
import type { TrafficStats } from './series';

/**
 * Progressing: being analysed step by step. Succeeded: the canary held at 100%
 * for one interval. RolledBack: a breach sent every request back to stable.
 * Failed: the rollout cannot be driven (bad spec, route missing); a person must act.
 * Terminal phases stay until the canary spec changes (a new rollout).
 */
export type Phase = 'Progressing' | 'Succeeded' | 'RolledBack' | 'Failed';

export type Action = 'start' | 'promote' | 'hold' | 'rollback' | 'complete' | 'none';

export interface Analysis {
  canary: TrafficStats;
  stable: TrafficStats;
  /** False when some metrics target could not be read this interval. */
  complete: boolean;
  /** Why it is incomplete, for the reason text. */
  missing?: string;
}

export interface Decision {
  action: Action;
  fromWeight: number;
  toWeight: number;
  phase: Phase;
  reason: string;
}

export class CanarySpecError extends MeshworkError {
  constructor(message: string) { super('ECANARYSPEC', message); }
}

/** Checks what decide() relies on; the policy loader validates too, this guards the controller. */
export function validateCanarySpec(spec: CanarySpec): void {
  const bad = (m: string) => { throw new CanarySpecError(`spec.canary: ${m}`); };
  if (!spec.subset) bad('subset is empty');
  if (!spec.stableSubset) bad('stableSubset is empty');
  if (spec.subset === spec.stableSubset) bad(`subset and stableSubset are both "${spec.subset}"`);
  if (!Array.isArray(spec.steps) || spec.steps.length === 0) bad('steps is empty');
  let last = 0;
  for (const [i, w] of spec.steps.entries()) {
    if (!Number.isInteger(w) || w <= 0 || w > 100) bad(`steps[${i}] is ${w}, expected an integer 1..100`);
    if (w <= last) bad(`steps[${i}] (${w}) is not above the previous step (${last})`);
    last = w;
  }
  if (last !== 100) bad(`the last step is ${last}, expected 100`);
  if (!(spec.intervalMs > 0)) bad(`intervalMs is ${spec.intervalMs}, expected > 0`);
  if (!(spec.minSuccessRatePercent >= 0 && spec.minSuccessRatePercent <= 100)) bad(`minSuccessRatePercent is ${spec.minSuccessRatePercent}, expected 0..100`);
  if (!(spec.maxP99LatencyMs > 0)) bad(`maxP99LatencyMs is ${spec.maxP99LatencyMs}, expected > 0`);
  if (spec.maxSuccessRateDropPercent !== undefined && !(spec.maxSuccessRateDropPercent >= 0 && spec.maxSuccessRateDropPercent <= 100)) bad(`maxSuccessRateDropPercent is ${spec.maxSuccessRateDropPercent}, expected 0..100`);
  if (spec.maxP99LatencyRatio !== undefined && !(spec.maxP99LatencyRatio >= 1)) bad(`maxP99LatencyRatio is ${spec.maxP99LatencyRatio}, expected >= 1`);
}

export interface DecideInput {
  spec: CanarySpec;
  phase: Phase;
  /** The canary's current weight in the route. */
  weight: number;
  /** What the last interval measured; undefined while no baseline exists yet. */
  analysis?: Analysis;
  /** Fewer canary requests than this in an interval: not enough evidence, hold. */
  minRequests?: number;
}

const pct = (v: number | null) => (v === null ? 'n/a' : `${Math.round(v * 100) / 100}%`);
const ms = (v: number | null) => (v === null ? 'n/a' : `${Math.round(v * 10) / 10}ms`);

export function decide(input: DecideInput): Decision {
  const { spec, phase, weight, analysis } = input;
  const minRequests = input.minRequests ?? 1;
  const d = (action: Action, toWeight: number, nextPhase: Phase, reason: string): Decision =>
    ({ action, fromWeight: weight, toWeight, phase: nextPhase, reason });

  if (phase !== 'Progressing') return d('none', weight, phase, `rollout is ${phase}`);
  if (weight === 0) return d('start', spec.steps[0], 'Progressing', `starting: ${spec.subset} gets ${spec.steps[0]}%`);
  if (!analysis) return d('hold', weight, 'Progressing', 'collecting a first interval of metrics');

  const { canary, stable } = analysis;
  const vs = (field: 'successRatePercent' | 'p99Ms') =>
    `(stable ${spec.stableSubset}: ${field === 'p99Ms' ? ms(stable.p99Ms) : pct(stable.successRatePercent)})`;

  // A breach rolls back even on partial metrics: what we saw already failed.
  if (canary.requests > 0 && canary.successRatePercent !== null && canary.successRatePercent < spec.minSuccessRatePercent) {
    return d('rollback', 0, 'RolledBack',
      `success rate of ${spec.subset} ${pct(canary.successRatePercent)} < ${spec.minSuccessRatePercent}% ` +
      `(${canary.failures}/${canary.requests} failed) ${vs('successRatePercent')}`);
  }
  if (canary.p99Ms !== null && canary.p99Ms > spec.maxP99LatencyMs) {
    return d('rollback', 0, 'RolledBack', `p99 of ${spec.subset} ${ms(canary.p99Ms)} > ${spec.maxP99LatencyMs}ms ${vs('p99Ms')}`);
  }
  // Relative to the stable subset over the same interval, when the policy asks and the stable side has data.
  if (spec.maxSuccessRateDropPercent !== undefined && canary.requests > 0 && canary.successRatePercent !== null
    && stable.requests > 0 && stable.successRatePercent !== null
    && canary.successRatePercent < stable.successRatePercent - spec.maxSuccessRateDropPercent) {
    return d('rollback', 0, 'RolledBack',
      `success rate of ${spec.subset} ${pct(canary.successRatePercent)} trails ${vs('successRatePercent')} by more than ${spec.maxSuccessRateDropPercent} points`);
  }
  if (spec.maxP99LatencyRatio !== undefined && canary.p99Ms !== null && stable.p99Ms !== null && stable.p99Ms > 0
    && canary.p99Ms > stable.p99Ms * spec.maxP99LatencyRatio) {
    return d('rollback', 0, 'RolledBack',
      `p99 of ${spec.subset} ${ms(canary.p99Ms)} is more than ${spec.maxP99LatencyRatio}x ${vs('p99Ms')}`);
  }
  if (!analysis.complete) {
    return d('hold', weight, 'Progressing', `metrics incomplete (${analysis.missing ?? 'a target failed'}); not promoting on partial data`);
  }
  if (canary.requests < minRequests) {
    return d('hold', weight, 'Progressing', `only ${canary.requests} request(s) reached ${spec.subset} in the last interval (need ${minRequests})`);
  }
  if (canary.p99Ms === null) {
    return d('hold', weight, 'Progressing', `no latency observations for ${spec.subset} in the last interval`);
  }
  const healthy = `${spec.subset} healthy: success ${pct(canary.successRatePercent)} >= ${spec.minSuccessRatePercent}%, p99 ${ms(canary.p99Ms)} <= ${spec.maxP99LatencyMs}ms`;
  if (weight >= 100) return d('complete', 100, 'Succeeded', `${healthy} at 100%: rollout complete`);
  const next = spec.steps.find((s) => s > weight) ?? 100;
  return d('promote', next, 'Progressing', `${healthy}: ${weight}% -> ${next}%`);
}
