/**
 * The canary controller: the I/O around decide(). For every TrafficPolicy
 * with `spec.canary`, once per `intervalMs`, it scrapes the sidecars, measures
 * the canary and stable subsets over the interval just ended, decides, and
 * writes the new split together with the rollout record in one store
 * transaction guarded by both keys' modRevisions: a concurrent user edit (or
 * a second controller) is never clobbered, and a decision is logged iff it
 * was applied.
 */
import type { Store, KeyValue } from '../store/types';
import { keys } from '../store/keys';
import type { TrafficPolicy } from '../policies/model';
import { withContext } from '../lib/errors';
import { decide, validateCanarySpec, type Analysis, type Decision } from './decide';
import { createCanaryMetrics, PHASES, type CanaryMetrics } from './metrics';
import {
  appendEvent, canaryKeys, canaryRoute, canaryWeight, decodeStoredPolicy, rolloutFingerprint, withCanaryWeight,
  type CanaryEvent, type CanaryStatus, type StoredPolicy,
} from './rollout';
import { serviceMatcher, trafficStats } from './series';
import type { MetricsSource, Scrape } from './source';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface CanaryControllerDeps {
  store: Store;
  metrics: MetricsSource;
  /** Where the controller's own metrics go; a fresh registry when omitted. */
  canaryMetrics?: CanaryMetrics;
  clock?: Clock;
  /** Fewer canary requests than this in an interval means "hold" (default 1). */
  minRequests?: number;
  /** Longest pause between looks at the store for new or changed policies (default 1000 ms). */
  relistMs?: number;
  /** Every recorded event, e.g. for a log line. */
  onEvent?: (policy: string, ev: CanaryEvent) => void;
  /** A failed pass (store or metrics down); the loop keeps going. */
  onError?: (err: Error) => void;
}

export interface CanaryController {
  readonly metrics: CanaryMetrics;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** One pass over every canary policy; what the timer runs. Tests call it with a fake clock. */
  runOnce(): Promise<void>;
}

interface Entry {
  nextDueAt: number;
  /** The scrape that opened the interval being measured. */
  baseline?: Scrape;
  /** Labels of its gauges, to drop them when the policy goes away. */
  observed?: { namespace: string; policy: string; subset: string };
}

export function createCanaryController(deps: CanaryControllerDeps): CanaryController {
  const { store } = deps;
  const clock = deps.clock ?? systemClock;
  const metrics = deps.canaryMetrics ?? createCanaryMetrics();
  const relistMs = deps.relistMs ?? 1000;
  const entries = new Map<string, Entry>();
  let timer: unknown;
  let running: Promise<void> | undefined;
  let stopped = true;

  const iso = (t: number) => new Date(t).toISOString();

  function observe(status: CanaryStatus): void {
    const e = entries.get(`${status.namespace}/${status.name}`);
    const labels = { namespace: status.namespace, policy: status.name, subset: status.canarySubset };
    if (e?.observed && e.observed.subset !== labels.subset) metrics.weight.remove(e.observed);
    if (e) e.observed = labels;
    metrics.weight.set({ namespace: status.namespace, policy: status.name, subset: status.canarySubset }, status.weight);
    for (const p of PHASES) metrics.phase.set({ namespace: status.namespace, policy: status.name, phase: p }, p === status.phase ? 1 : 0);
  }

  function record(status: CanaryStatus, ev: CanaryEvent): CanaryStatus {
    metrics.decisions.inc({ namespace: status.namespace, policy: status.name, decision: ev.action });
    deps.onEvent?.(`${status.namespace}/${status.name}`, ev);
    // Repeated identical holds update the last decision but do not flood the log.
    const last = status.lastDecision;
    if (ev.action === 'hold' && last?.action === 'hold' && last.reason === ev.reason) {
      return { ...status, lastDecision: ev, updatedAt: ev.at };
    }
    return appendEvent(status, ev);
  }

  async function writeStatus(key: string, rev: number, status: CanaryStatus): Promise<boolean> {
    return store.cas(key, rev, JSON.stringify(status));
  }

  function analyze(prev: Scrape, cur: Scrape, policy: TrafficPolicy): Analysis {
    const c = policy.spec.canary!;
    const svc = serviceMatcher(policy.spec.service, policy.metadata.namespace);
    const of = (subset: string) => trafficStats(prev, cur, (l) => svc(l.destination_service) && l.destination_subset === subset);
    const readBefore = new Set(prev.targets.filter((t) => t.samples).map((t) => t.target));
    const unreadable = cur.targets.filter((t) => !t.samples);
    const fresh = cur.targets.filter((t) => t.samples && !readBefore.has(t.target));
    const missing = [
      ...unreadable.map((t) => `${t.target}: ${t.error ?? 'unreadable'}`),
      ...fresh.map((t) => `${t.target}: no earlier scrape`),
    ];
    return {
      canary: of(c.subset),
      stable: of(c.stableSubset),
      complete: missing.length === 0,
      missing: missing.length ? `${missing.length} of ${cur.targets.length} target(s): ${missing.slice(0, 2).join('; ')}` : undefined,
    };
  }

  /**
   * Writes the new weight and the status atomically. When the policy changed
   * under us in a way that does not touch the rollout (a timeout edited, say),
   * the same weight is applied to the fresh version; otherwise the decision is
   * dropped and the next pass starts from what the user wrote.
   */
  async function applyWeight(kv: KeyValue, stored: StoredPolicy, statusKey: string, statusRev: number, status: CanaryStatus, d: Decision): Promise<boolean> {
    const fp = rolloutFingerprint(stored.policy);
    for (let attempt = 0; attempt < 3; attempt++) {
      const next = withCanaryWeight(stored.policy, d.toWeight);
      const ok = await store.txn(
        [{ key: kv.key, modRevision: kv.modRevision }, { key: statusKey, modRevision: statusRev }],
        [{ op: 'put', key: kv.key, value: stored.encode(next) }, { op: 'put', key: statusKey, value: JSON.stringify(status) }],
      );
      if (ok) return true;
      const [freshKv, freshStatus] = await Promise.all([store.get(kv.key), store.get(statusKey)]);
      if (!freshKv || (freshStatus?.modRevision ?? 0) !== statusRev) return false;
      const freshStored = decodeStoredPolicy(freshKv.value);
      if (!freshStored?.policy.spec.canary || rolloutFingerprint(freshStored.policy) !== fp) return false;
      if (d.action !== 'rollback' && canaryWeight(freshStored.policy) !== d.fromWeight) return false;
      kv = freshKv;
      stored = freshStored;
    }
    return false;
  }

  async function step(id: string, kv: KeyValue, stored: StoredPolicy, statusKv: KeyValue | undefined, now: number, scrape: () => Promise<Scrape>): Promise<void> {
    const policy = stored.policy;
    const spec = policy.spec.canary!;
    const { namespace, name } = policy.metadata;
    const statusKey = canaryKeys.status(namespace, name);
    let statusRev = statusKv?.modRevision ?? 0;
    let status: CanaryStatus | undefined;
    try { status = statusKv ? JSON.parse(statusKv.value) : undefined; } catch { status = undefined; }
    const fp = rolloutFingerprint(policy);
    const entry = entries.get(id) ?? { nextDueAt: now };
    entries.set(id, entry);

    let actual: number;
    let routeName: string;
    try {
      validateCanarySpec(spec);
      routeName = canaryRoute(policy).name;
      actual = canaryWeight(policy);
      withCanaryWeight(policy, actual); // refuses a route it could not drive
    } catch (err: any) {
      const reason = String(err.message);
      if (status?.fingerprint === fp && status.phase === 'Failed' && status.lastDecision?.reason === reason) return;
      const base = freshStatus(policy, fp, 0, now, status?.startedAt);
      const failed = record({ ...base, phase: 'Failed' }, { at: iso(now), action: 'error', fromWeight: 0, toWeight: 0, reason });
      await writeStatus(statusKey, statusRev, failed);
      observe(failed);
      return;
    }

    if (!status || status.fingerprint !== fp || status.phase === 'Failed') {
      // A new rollout, or a Failed one whose policy is now drivable: start from the split it has now.
      const begun = record(freshStatus(policy, fp, actual, now), {
        at: iso(now), action: 'adopt', fromWeight: actual, toWeight: actual,
        reason: `rollout of ${spec.subset} begins at ${actual}% on route "${routeName}"`,
      });
      if (!(await writeStatus(statusKey, statusRev, begun))) return;
      entry.baseline = undefined;
      entry.nextDueAt = now;
      status = begun;
      statusRev = (await store.get(statusKey))?.modRevision ?? 0;
    }
    // Steps and thresholds may be tuned mid-rollout; keep the record in step.
    status = { ...status, steps: spec.steps, route: routeName, service: policy.spec.service };
    observe(status);
    if (status.phase !== 'Progressing') return;

    if (status.weight !== actual) {
      const adopted = record({ ...status, weight: actual }, {
        at: iso(now), action: 'adopt', fromWeight: status.weight, toWeight: actual,
        reason: `weight changed outside the controller (${status.weight}% -> ${actual}%); analysis restarts`,
      });
      if (await writeStatus(statusKey, statusRev, adopted)) {
        observe(adopted);
        entry.baseline = await scrape();
        entry.nextDueAt = now + spec.intervalMs;
      }
      return;
    }
    if (now < entry.nextDueAt) return;

    const cur = await scrape();
    const analysis = entry.baseline ? analyze(entry.baseline, cur, policy) : undefined;
    const d = decide({ spec, phase: status.phase, weight: actual, analysis, minRequests: deps.minRequests });
    if (d.action === 'none') return;
    const ev: CanaryEvent = { at: iso(now), action: d.action, fromWeight: d.fromWeight, toWeight: d.toWeight, reason: d.reason, canary: analysis?.canary, stable: analysis?.stable };
    const next = record({ ...status, phase: d.phase, weight: d.toWeight }, ev);
    const applied = d.toWeight !== d.fromWeight
      ? await applyWeight(kv, stored, statusKey, statusRev, next, d)
      : await writeStatus(statusKey, statusRev, next);
    if (!applied) {
      // Someone else changed the policy or the record: re-read and decide again on the next pass.
      metrics.decisions.inc({ namespace, policy: name, decision: 'conflict' });
      deps.onEvent?.(id, { ...ev, action: 'conflict', reason: `not applied (${d.action}): the policy or rollout record changed concurrently` });
      entry.nextDueAt = now;
      return;
    }
    observe(next);
    entry.baseline = cur;
    entry.nextDueAt = now + spec.intervalMs;
  }

  function freshStatus(policy: TrafficPolicy, fp: string, weight: number, now: number, startedAt?: string): CanaryStatus {
    const c = policy.spec.canary!;
    let route = c.route ?? '';
    try { route = canaryRoute(policy).name; } catch { /* reported by the caller */ }
    return {
      namespace: policy.metadata.namespace,
      name: policy.metadata.name,
      service: policy.spec.service,
      route,
      canarySubset: c.subset,
      stableSubset: c.stableSubset,
      steps: c.steps,
      fingerprint: fp,
      phase: 'Progressing',
      weight,
      startedAt: startedAt ?? iso(now),
      updatedAt: iso(now),
      events: [],
    };
  }

  async function runOnce(): Promise<void> {
    const now = clock.now();
    let policies;
    let statuses;
    try {
      [policies, statuses] = await Promise.all([store.list(keys.policies('TrafficPolicy')), store.list(canaryKeys.all())]);
    } catch (err) {
      throw withContext('canary: reading policies', err);
    }
    const statusByKey = new Map(statuses.items.map((kv) => [kv.key, kv]));
    let scraped: Promise<Scrape> | undefined;
    const scrape = () => (scraped ??= deps.metrics.scrape().catch((err) => { scraped = undefined; throw withContext('canary: scraping metrics', err); }));
    const seen = new Set<string>();
    const errors: Error[] = [];
    for (const kv of policies.items) {
      const stored = decodeStoredPolicy(kv.value);
      if (!stored?.policy.spec?.canary) continue;
      const { namespace, name } = stored.policy.metadata;
      const id = `${namespace}/${name}`;
      seen.add(id);
      try {
        await step(id, kv, stored, statusByKey.get(canaryKeys.status(namespace, name)), now, scrape);
      } catch (err) {
        errors.push(withContext(`canary ${id}`, err));
      }
    }
    for (const [id, e] of entries) {
      if (seen.has(id)) continue;
      if (e.observed) {
        metrics.weight.remove(e.observed);
        for (const phase of PHASES) metrics.phase.remove({ namespace: e.observed.namespace, policy: e.observed.policy, phase });
      }
      entries.delete(id);
    }
    if (errors.length) throw errors[0];
  }

  function schedule(): void {
    if (stopped) return;
    const now = clock.now();
    const due = Math.min(now + relistMs, ...[...entries.values()].map((e) => e.nextDueAt));
    timer = clock.setTimeout(tick, Math.max(10, due - now));
  }

  function tick(): void {
    running = runOnce()
      .catch((err) => deps.onError?.(err instanceof Error ? err : new Error(String(err))))
      .finally(() => { running = undefined; schedule(); });
  }

  return {
    metrics,
    runOnce,
    async start() {
      if (!stopped) return;
      stopped = false;
      tick();
    },
    async stop() {
      stopped = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
