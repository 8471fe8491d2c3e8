/**
 * A small parser for the Prometheus text exposition format (version 0.0.4):
 * the format every meshwork component serves on /metrics. We only need the
 * samples (name, labels, value); HELP/TYPE comments and timestamps are read
 * past. Errors name the source and the line so a broken target is findable.
 */
import { MeshworkError } from '../lib/errors';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class MetricsParseError extends MeshworkError {
  constructor(source: string, line: number, what: string) {
    super('EMETRICSPARSE', `${source}:${line}: ${what}`);
  }
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*/;

export function parsePrometheusText(text: string, source = 'metrics'): Sample[] {
  const out: Sample[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    out.push(parseLine(line, source, i + 1));
  }
  return out;
}

function parseLine(line: string, source: string, lineNo: number): Sample {
  const fail = (what: string): never => { throw new MetricsParseError(source, lineNo, what); };
  const m = NAME_RE.exec(line);
  if (!m) fail(`expected a metric name at "${line.slice(0, 40)}"`);
  const name = m![0];
  let pos = name.length;
  const labels: Record<string, string> = {};
  if (line[pos] === '{') {
    pos++;
    for (;;) {
      while (line[pos] === ' ') pos++;
      if (line[pos] === '}') { pos++; break; }
      const lm = LABEL_RE.exec(line.slice(pos));
      if (!lm) fail(`expected a label name in ${name} at column ${pos + 1}`);
      pos += lm![0].length;
      while (line[pos] === ' ') pos++;
      if (line[pos] !== '=' || line[pos + 1] !== '"') fail(`expected ="value" after label ${lm![0]} in ${name}`);
      pos += 2;
      let value = '';
      for (;;) {
        const c = line[pos];
        if (c === undefined) fail(`unterminated value of label ${lm![0]} in ${name}`);
        if (c === '"') { pos++; break; }
        if (c === '\\') {
          const e = line[pos + 1];
          value += e === 'n' ? '\n' : e;
          pos += 2;
          continue;
        }
        value += c;
        pos++;
      }
      labels[lm![0]] = value;
      while (line[pos] === ' ') pos++;
      if (line[pos] === ',') { pos++; continue; }
      if (line[pos] === '}') { pos++; break; }
      fail(`expected , or } after label ${lm![0]} in ${name}`);
    }
  }
  const rest = line.slice(pos).trim().split(/\s+/);
  if (rest[0] === undefined || rest[0] === '') fail(`missing value for ${name}`);
  const value = parseValue(rest[0]);
  if (value === undefined) fail(`bad value "${rest[0]}" for ${name}`);
  return { name, labels, value: value! };
}

// Prometheus reads values with Go's ParseFloat, so NaN and Inf are accepted in
// any case (prom-client prints "Nan" for an empty gauge).
function parseValue(s: string): number | undefined {
  const lower = s.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan') return NaN;
  const v = Number(s);
  return Number.isNaN(v) ? undefined : v;
}
