/**
 * The live terminal view, pure: an observation and the story's state in, a
 * screen of text out. Plain ANSI (clear, bold, colours), no dependency; the
 * caller decides whether to redraw (a terminal) or print one line (a pipe).
 */
import type { Observation, Row } from './observe';

export interface ViewState {
  title: string;
  dashboardUrl: string;
  elapsedSeconds: number;
  canaryWeight: number;
  canaryPhase: string;
  /** The latest story lines, newest last. */
  log: string[];
}

const ESC = '\x1b[';
const bold = (s: string) => `${ESC}1m${s}${ESC}0m`;
const dim = (s: string) => `${ESC}2m${s}${ESC}0m`;
const colour = (code: number, s: string) => `${ESC}${code}m${s}${ESC}0m`;

export const fmtRate = (r: number) => `${r.toFixed(1)}/s`;
export const fmtPct = (p: number | null) => (p === null ? '—' : `${p >= 99.95 ? '100' : p.toFixed(1)}%`);
export const fmtMs = (ms: number | null) => (ms === null ? '—' : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`);

function successColoured(p: number | null, s: string): string {
  if (p === null) return dim(s);
  return colour(p >= 99 ? 32 : p >= 90 ? 33 : 31, s);
}

const pad = (s: string, n: number) => s + ' '.repeat(Math.max(0, n - s.length));
const lpad = (s: string, n: number) => ' '.repeat(Math.max(0, n - s.length)) + s;

function row(r: Row): string {
  const pct = fmtPct(r.successPercent);
  return `  ${pad(r.service, 10)} ${pad(r.subset, 6)} ${lpad(fmtRate(r.rps), 9)}  ${successColoured(r.successPercent, lpad(pct, 7))}  ${lpad(fmtMs(r.p99Ms), 9)}`;
}

/** The whole screen, starting with "clear and home". */
export function renderScreen(obs: Observation | undefined, st: ViewState): string {
  const out: string[] = [`${ESC}H${ESC}2J${bold(st.title)}  ${dim(`${Math.floor(st.elapsedSeconds)} s`)}`];
  out.push(`dashboard: ${colour(36, st.dashboardUrl)}   ${dim('Ctrl-C removes everything')}`, '');
  out.push(bold(`  ${pad('service', 10)} ${pad('subset', 6)} ${lpad('rate', 9)}  ${lpad('success', 7)}  ${lpad('p99', 9)}`));
  for (const r of obs?.rows ?? []) out.push(row(r));
  if (!obs) out.push(dim('  (waiting for the first two scrapes)'));
  out.push('', `  split reviews: v1 ${100 - st.canaryWeight}% / v2 ${st.canaryWeight}%   canary: ${st.canaryPhase}`);
  const eps = (obs?.endpoints ?? []).filter((e) => e.service === 'reviews' || e.service === 'ratings');
  if (eps.length) {
    out.push('', bold('  endpoints (as the frontend\'s sidecar sees them)'));
    for (const e of eps) {
      const state = e.breaker === 'closed' ? colour(32, 'closed') : colour(31, e.breaker);
      out.push(`  ${pad(e.service, 8)} ${pad(e.subsets.join(','), 4)} ${pad((e.pod ?? e.address).replace(/^[^/]*\//, ''), 14)} breaker ${state}${e.ejected ? colour(31, ' ejected') : ''}`);
    }
  }
  out.push('', bold('  story'));
  for (const l of st.log.slice(-8)) out.push(`  ${l}`);
  return `${out.join('\n')}\n`;
}

/** One line for a pipe or a log: the same numbers without colours. */
export function renderLine(obs: Observation | undefined, st: ViewState): string {
  if (!obs) return `[${Math.floor(st.elapsedSeconds)}s] waiting for metrics`;
  const parts = obs.rows.map((r) => `${r.service}/${r.subset} ${fmtRate(r.rps)} ${fmtPct(r.successPercent)} p99 ${fmtMs(r.p99Ms)}`);
  const open = obs.endpoints.filter((e) => e.breaker !== 'closed' || e.ejected).map((e) => `${e.pod ?? e.address} ${e.breaker}${e.ejected ? '+ejected' : ''}`);
  return `[${Math.floor(st.elapsedSeconds)}s] ${parts.join(' | ')} | split v2 ${st.canaryWeight}%${open.length ? ` | breakers: ${open.join(', ')}` : ''}`;
}
