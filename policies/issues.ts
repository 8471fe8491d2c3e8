/**
 * Turns schema (zod) issues and semantic findings into PolicyIssues that name
 * file:line:col, the field path and what was expected, with a "did you mean"
 * for misspelt field names and enum values.
 */
import type { z } from 'zod';
import type { PolicyIssue } from './errors';
import { UNKNOWN_FIELDS, type UnknownFields } from './fields';
import { formatPath, type FieldPath, type SourceDocument } from './source';
import { nearest } from './suggest';

/** An issue found by a check, before it is located in a file. */
export interface Finding { path: FieldPath; message: string; key?: boolean }

export function locateFinding(src: SourceDocument, f: Finding): PolicyIssue {
  const pos = src.locate(f.path, f.key);
  return { file: src.file, line: pos.line, column: pos.column, path: formatPath([...src.prefix, ...f.path]), message: f.message };
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `the string "${v.length > 40 ? `${v.slice(0, 40)}...` : v}"`;
  return `${typeof v} ${String(v)}`;
}

function valueAt(root: unknown, path: FieldPath): unknown {
  let v: any = root;
  for (const seg of path) { if (v === null || typeof v !== 'object') return undefined; v = v[seg as any]; }
  return v;
}

/** One zod issue as findings (an unknown-fields issue yields one finding per field). */
export function findingsOfZodIssue(iss: z.core.$ZodIssue, root: unknown): Finding[] {
  const path = iss.path as Array<string | number>;
  if (iss.code === 'invalid_union') {
    // Report the branch that got furthest rather than "invalid input".
    const branches = (iss as any).errors as z.core.$ZodIssue[][] | undefined;
    const best = branches?.slice().sort((a, b) => b.length - a.length)[0]?.[0];
    if (best) return findingsOfZodIssue(best, root);
  }
  if (iss.message.startsWith(UNKNOWN_FIELDS)) {
    const u = JSON.parse(iss.message.slice(UNKNOWN_FIELDS.length)) as UnknownFields;
    return u.keys.map((k) => {
      if (u.unsupported.includes(k)) return { path: [...path, k], key: true, message: `\`${k}\` is not supported by meshwork; remove it` };
      const hint = nearest(k, u.allowed);
      return {
        path: [...path, k], key: true,
        message: `unknown field \`${k}\`${hint ? `; did you mean \`${hint}\`?` : `; expected one of ${u.allowed.map((a) => `\`${a}\``).join(', ')}`}`,
      };
    });
  }
  const value = valueAt(root, path);
  switch (iss.code) {
    case 'invalid_type': {
      if (value === undefined) {
        const field = path[path.length - 1];
        return [{ path, message: typeof field === 'string' ? `missing required field \`${field}\`` : 'missing value' }];
      }
      const custom = !iss.message.startsWith('Invalid input');
      return [{ path, message: custom ? `${iss.message}, got ${describe(value)}` : `expected ${iss.expected}, got ${describe(value)}` }];
    }
    case 'invalid_value': {
      const options = iss.values.map(String);
      if (options.length === 1) return [{ path, message: `expected \`${options[0]}\`, got ${describe(value)}` }];
      const hint = typeof value === 'string' ? nearest(value, options) : undefined;
      return [{ path, message: `expected one of ${options.join(', ')}, got ${describe(value)}${hint ? `; did you mean \`${hint}\`?` : ''}` }];
    }
    case 'too_small':
      if (iss.origin === 'array' && !iss.message.startsWith('Too small')) return [{ path, message: iss.message }];
      if (iss.origin === 'array') return [{ path, message: `expected at least ${String(iss.minimum)} item${Number(iss.minimum) === 1 ? '' : 's'}` }];
      return [{ path, message: iss.message.startsWith('Too small') ? `must be at least ${String(iss.minimum)}, got ${String(value)}` : `${iss.message}, got ${String(value)}` }];
    case 'too_big':
      if (iss.origin === 'string') return [{ path, message: iss.message.startsWith('Too big') ? `must be at most ${String(iss.maximum)} characters` : iss.message }];
      return [{ path, message: iss.message.startsWith('Too big') ? `must be at most ${String(iss.maximum)}, got ${String(value)}` : `${iss.message}, got ${String(value)}` }];
    case 'invalid_key':
      // Point at the key itself, not at its value.
      return (iss.issues ?? []).flatMap((i) => findingsOfZodIssue({ ...i, path } as z.core.$ZodIssue, root)).map((f) => ({ ...f, key: true }));
    default:
      return [{ path, message: iss.message }];
  }
}
