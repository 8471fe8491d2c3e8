/**
 * The scripted story, as a small state machine fed by the canary
 * controller's decisions and by the live observations:
 *   1. the canary (reviews v2) is promoted step by step while healthy;
 *   2. at `failAtWeight`, v2 starts failing; the controller rolls it back;
 *   3. a v1 endpoint is killed; its breaker opens (or it is ejected) while
 *      retries keep the users' success rate up.
 * It never touches the cluster itself: it asks through `actions`, so the
 * sequence is testable without namespaces.
 */
import type { Observation } from './observe';

export interface CanaryDecision { action: string; fromWeight: number; toWeight: number; reason: string; canary?: { successRatePercent: number | null; p99Ms: number | null } }

export interface StoryActions {
  say(msg: string, event: Record<string, unknown>): void;
  failCanary(rate: number): Promise<void>;
  killEndpoint(pod: string): void;
}

export type StoryPhase = 'promoting' | 'failing' | 'recovering' | 'watching-breaker' | 'done';

export interface StoryOptions { failAtWeight: number; failRate: number; victim: string; canarySubset: string }

const pct = (p: number | null | undefined) => (p === null || p === undefined ? '—' : `${p >= 99.95 ? 100 : p.toFixed(1)}%`);
const ms = (v: number | null | undefined) => (v === null || v === undefined ? '—' : `${Math.round(v)} ms`);

export function createStory(opts: StoryOptions, act: StoryActions) {
  let phase: StoryPhase = 'promoting';
  let killedAt = 0;
  let recoveringFor = 0;

  function kill(): void {
    phase = 'watching-breaker';
    act.say(`killing ${opts.victim} (a reviews v1 endpoint): the breaker and retries should hide it`, { type: 'story', step: 'endpoint-killed', pod: opts.victim });
    killedAt = Date.now();
    act.killEndpoint(opts.victim);
  }

  function stats(d: CanaryDecision): string {
    return `success ${pct(d.canary?.successRatePercent)}, p99 ${ms(d.canary?.p99Ms)}`;
  }

  return {
    get phase() { return phase; },

    /** A decision of the canary controller. */
    async onCanary(d: CanaryDecision): Promise<void> {
      const ev = { action: d.action, fromWeight: d.fromWeight, toWeight: d.toWeight, reason: d.reason, canary: d.canary };
      if (d.action === 'hold') return;
      if (d.action === 'promote' || d.action === 'start' || d.action === 'complete') {
        act.say(`canary reviews v2: ${d.fromWeight}% → ${d.toWeight}% (${stats(d)})`, { type: 'story', step: 'canary-promoted', ...ev });
      } else if (d.action === 'adopt') {
        act.say(`canary reviews v2: the controller takes over the rollout at ${d.toWeight}%`, { type: 'story', step: 'canary-adopted', ...ev });
      } else if (d.action === 'rollback') {
        act.say(`canary reviews v2 rolled back: ${d.fromWeight}% → ${d.toWeight}% (${stats(d)}): ${d.reason}`, { type: 'story', step: 'canary-rolled-back', ...ev });
      } else {
        act.say(`canary reviews v2: ${d.action} (${d.reason})`, { type: 'story', step: `canary-${d.action}`, ...ev });
      }
      if (phase === 'promoting' && d.action === 'promote' && d.toWeight >= opts.failAtWeight) {
        phase = 'failing';
        act.say(`reviews v2 starts failing: ${Math.round(opts.failRate * 100)}% of its answers are 500s`, { type: 'story', step: 'canary-failing', rate: opts.failRate });
        await act.failCanary(opts.failRate);
      } else if (phase === 'failing' && d.action === 'rollback') {
        // Let the rollback reach the sidecars before the next act, so the two effects are not mixed up.
        phase = 'recovering';
        recoveringFor = 0;
      }
    },

    /** A live observation: watches for the killed endpoint's breaker. */
    onObservation(o: Observation): void {
      if (phase === 'recovering') {
        const v2 = o.rows.find((r) => r.service === 'reviews' && r.subset === opts.canarySubset);
        const fe = o.rows.find((r) => r.service === 'frontend');
        const clean = (!v2 || v2.rps === 0) && fe?.successPercent != null && fe.successPercent >= 99;
        // A clean second, or give up waiting after a while (a busy machine may never show one).
        if (clean || ++recoveringFor >= 15) {
          act.say(`rollback in force: reviews ${opts.canarySubset} gets no traffic, users' success ${pct(fe?.successPercent)}`, { type: 'story', step: 'recovered', frontendSuccessPercent: fe?.successPercent ?? null });
          kill();
        }
        return;
      }
      if (phase !== 'watching-breaker') return;
      // The sidecar names pods "namespace/pod".
      const isVictim = (pod?: string) => pod === opts.victim || (pod ?? '').endsWith(`/${opts.victim}`);
      const victim = o.endpoints.find((e) => isVictim(e.pod) && (e.breaker === 'open' || e.ejected));
      if (!victim) return;
      const fe = o.rows.find((r) => r.service === 'frontend');
      phase = 'done';
      const how = victim.breaker === 'open' ? `breaker open${victim.ejected ? ' and ejected' : ''}` : 'ejected by outlier detection';
      act.say(
        `${opts.victim}: ${how} ${((Date.now() - killedAt) / 1000).toFixed(1)} s after it died; users' success rate ${pct(fe?.successPercent)}`,
        { type: 'story', step: 'breaker-open', pod: opts.victim, breaker: victim.breaker, ejected: victim.ejected, frontendSuccessPercent: fe?.successPercent ?? null },
      );
      act.say('the story is over: the mesh keeps running steady until Ctrl-C', { type: 'story', step: 'done' });
    },
  };
}
