/**
 * Durations as users write them ("250ms", "5s", "1m30s", "2h"), converted to
 * whole milliseconds. The same grammar as Go's time.ParseDuration and the
 * Gateway API's Duration, restricted to ms/s/m/h and to positive values.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';
const WHOLE = new RegExp(DURATION_PATTERN);
const PART = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;

/** Milliseconds, or a reason the text is not a duration. */
export function parseDuration(text: string): { ms: number } | { error: string } {
  const t = text.trim();
  if (t.startsWith('-')) return { error: `duration "${text}" is negative; durations must be greater than zero` };
  if (!WHOLE.test(t)) return { error: `"${text}" is not a duration; expected a number with a unit, e.g. 250ms, 5s, 1m, 1h30m` };
  let ms = 0;
  for (const m of t.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2]];
  if (ms === 0) return { error: `duration "${text}" is zero; durations must be greater than zero` };
  if (!Number.isInteger(ms)) return { error: `duration "${text}" is not a whole number of milliseconds` };
  return { ms };
}

/** The shortest exact text for a duration: 90000 -> "90s", 120000 -> "2m". */
export function formatDuration(ms: number): string {
  for (const unit of ['h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
