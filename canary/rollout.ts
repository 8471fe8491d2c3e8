/**
 * The rollout's persistent record and the policy edits the controller makes.
 * The record lives in the store under /meshwork/canary/<namespace>/<name>
 * (one per TrafficPolicy with a canary) and doubles as the event log that
 * `meshwork canary status` reads. Pure helpers: no store access here.
 */
import * as crypto from 'node:crypto';
import { ROOT } from '../store/keys';
import type { Route, TrafficPolicy } from '../policies/model';
import { CanarySpecError, type Action, type Phase } from './decide';
import type { TrafficStats } from './series';

export const canaryKeys = {
  status: (namespace: string, name: string) => `${ROOT}canary/${namespace}/${name}`,
  all: () => `${ROOT}canary/`,
};

/** Events kept per rollout; older ones fall off. */
export const MAX_EVENTS = 50;

export interface CanaryEvent {
  at: string;
  action: Action | 'adopt' | 'conflict' | 'error';
  fromWeight: number;
  toWeight: number;
  reason: string;
  canary?: TrafficStats;
  stable?: TrafficStats;
}

export interface CanaryStatus {
  namespace: string;
  name: string;
  service: string;
  route: string;
  canarySubset: string;
  stableSubset: string;
  steps: number[];
  /** Identifies the rollout: a change of subsets or their labels starts a new one. */
  fingerprint: string;
  phase: Phase;
  weight: number;
  startedAt: string;
  updatedAt: string;
  lastDecision?: CanaryEvent;
  events: CanaryEvent[];
}

export function appendEvent(status: CanaryStatus, ev: CanaryEvent): CanaryStatus {
  const events = [...status.events, ev].slice(-MAX_EVENTS);
  return { ...status, events, lastDecision: ev, updatedAt: ev.at };
}

/** Hash of what makes a rollout "the same": the two subsets and their labels. */
export function rolloutFingerprint(policy: TrafficPolicy): string {
  const c = policy.spec.canary!;
  const labelsOf = (n: string) => policy.spec.subsets.find((s) => s.name === n)?.labels ?? null;
  const basis = JSON.stringify([policy.spec.service, c.subset, c.stableSubset, labelsOf(c.subset), labelsOf(c.stableSubset)]);
  return crypto.createHash('sha256').update(basis).digest('hex').slice(0, 16);
}

/** The route whose split the canary drives: spec.canary.route, else the first route. */
export function canaryRoute(policy: TrafficPolicy): Route {
  const c = policy.spec.canary!;
  const routes = policy.spec.routes ?? [];
  const route = c.route ? routes.find((r) => r.name === c.route) : routes[0];
  if (!route) {
    throw new CanarySpecError(c.route ? `spec.canary.route "${c.route}" is not a route of the policy` : 'the policy has no route to split');
  }
  return route;
}

export function canaryWeight(policy: TrafficPolicy): number {
  const c = policy.spec.canary!;
  return canaryRoute(policy).backends.find((b) => b.subset === c.subset)?.weight ?? 0;
}

/**
 * A copy of `policy` whose canary route sends `weight` to the canary and the
 * rest to stable. Any other backend carrying weight makes the split ambiguous:
 * refuse rather than guess whose share to take.
 */
export function withCanaryWeight(policy: TrafficPolicy, weight: number): TrafficPolicy {
  const copy: TrafficPolicy = structuredClone(policy);
  const c = copy.spec.canary!;
  const route = canaryRoute(copy);
  const others = route.backends.filter((b) => b.subset !== c.subset && b.subset !== c.stableSubset && b.weight > 0);
  if (others.length > 0) {
    throw new CanarySpecError(`route "${route.name}" also sends traffic to ${others.map((o) => `"${o.subset}"`).join(', ')}; a canary route may split only between "${c.stableSubset}" and "${c.subset}"`);
  }
  const set = (subset: string, w: number) => {
    const b = route.backends.find((x) => x.subset === subset);
    if (b) b.weight = w;
    else route.backends.push({ subset, weight: w });
  };
  set(c.stableSubset, 100 - weight);
  set(c.subset, weight);
  return copy;
}

/**
 * The stored form of a policy: the bare document, or a wrapper object holding
 * it under one property (e.g. with its source position). We write back the
 * same shape we read so other readers of the key are not surprised.
 */
export interface StoredPolicy {
  policy: TrafficPolicy;
  encode(p: TrafficPolicy): string;
}

export function decodeStoredPolicy(value: string): StoredPolicy | undefined {
  let parsed: any;
  try { parsed = JSON.parse(value); } catch { return undefined; }
  const shaped = (x: any): boolean => x?.kind === 'TrafficPolicy' && typeof x.spec === 'object' && x.spec !== null && typeof x.metadata?.name === 'string' && typeof x.metadata?.namespace === 'string';
  if (shaped(parsed)) return { policy: parsed, encode: (p) => JSON.stringify(p) };
  if (parsed && typeof parsed === 'object') {
    for (const [k, v] of Object.entries(parsed)) {
      if (shaped(v)) {
        return { policy: v as TrafficPolicy, encode: (p) => JSON.stringify({ ...parsed, [k]: p }) };
      }
    }
  }
  return undefined;
}
