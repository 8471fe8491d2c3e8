/**
 * Text rendering of rollouts for `meshwork canary status` (pure: tested
 * without a store), plus the plain column table the product CLIs share.
 */
import type { CanaryStatus } from './rollout';

/** Left-aligned columns separated by two spaces; the first row is the header. */
export function formatTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length); });
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}

export function ago(iso: string | undefined, now: number): string {
  if (!iso) return '-';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

/** A rollout as `canary status` shows it: either the controller's record or "Pending". */
export type RolloutView = CanaryStatus | { namespace: string; name: string; service: string; canarySubset: string; stableSubset: string; steps: number[]; phase: 'Pending'; weight: number };

export function renderRollouts(rollouts: RolloutView[], now: number): string {
  if (rollouts.length === 0) return 'No TrafficPolicy declares a canary.\n';
  const rows = [['POLICY', 'SERVICE', 'CANARY', 'PHASE', 'WEIGHT', 'STEPS', 'LAST DECISION', 'WHY']];
  for (const r of rollouts) {
    const last = 'lastDecision' in r ? r.lastDecision : undefined;
    rows.push([
      `${r.namespace}/${r.name}`,
      r.service,
      `${r.canarySubset} (vs ${r.stableSubset})`,
      r.phase,
      `${r.weight}%`,
      r.steps.map((s) => (s === r.weight ? `[${s}]` : String(s))).join(' '),
      last ? `${last.action} ${ago(last.at, now)}` : '-',
      last?.reason ?? (r.phase === 'Pending' ? 'no controller has looked at it yet' : '-'),
    ]);
  }
  return formatTable(rows);
}
