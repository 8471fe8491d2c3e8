/**
 * Building blocks shared by every document schema: strict objects whose
 * unknown-field errors carry what is allowed (for "did you mean"), durations,
 * names, labels, percentages. Each refuses bad input with a message that says
 * what was expected; defaults are applied by the object transforms in
 * schema.ts, never here.
 */
import * as net from 'node:net';
import { z } from 'zod';
import { DURATION_PATTERN, parseDuration } from './duration';

/** Marks a zod message as an unknown-fields report for issues.ts to expand. */
export const UNKNOWN_FIELDS = '\u0000unknown-fields:';

export interface UnknownFields { keys: string[]; allowed: string[]; unsupported: string[] }

/**
 * A strict object. `unsupported` names fields of an imported format that
 * meshwork knows but does not implement, so the error says so instead of
 * "unknown field".
 */
export function obj<S extends z.ZodRawShape>(shape: S, unsupported: string[] = []) {
  const allowed = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => iss.code === 'unrecognized_keys'
      ? UNKNOWN_FIELDS + JSON.stringify({ keys: iss.keys, allowed, unsupported } satisfies UnknownFields)
      : undefined,
  });
}

/** Drops undefined members so a model object has only the fields that were given. */
export function prune<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k];
  return o;
}

export const duration = z
  .string({ error: 'expected a duration string such as 250ms, 5s or 1m' })
  .regex(new RegExp(DURATION_PATTERN), { error: (iss) => { const r = parseDuration(String(iss.input)); return 'error' in r ? r.error : undefined; } })
  .transform((v, ctx) => {
    const r = parseDuration(v);
    if ('error' in r) { ctx.issues.push({ code: 'custom', message: r.error, input: v }); return z.NEVER; }
    return r.ms;
  })
  .meta({ description: 'A duration: a number with a unit ms, s, m or h, e.g. 250ms, 5s, 1m30s' });

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const dnsLabel = z
  .string({ error: 'expected a name (a string)' })
  .max(63, { error: 'must be at most 63 characters' })
  .regex(DNS_LABEL, { error: (iss) => `"${String(iss.input)}" is not a valid name: use lower-case letters, digits and "-", starting and ending with a letter or digit` });

export const hostname = z
  .string()
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\.?$/i, { error: (iss) => `"${String(iss.input)}" is not a valid DNS name` });

const LABEL_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
export const labels = z.record(
  z.string().regex(LABEL_NAME, { error: (iss) => `"${String(iss.input)}" is not a valid label key` }),
  z.string({ error: 'expected a string label value (quote numbers and booleans)' })
    .regex(LABEL_VALUE, { error: (iss) => `"${String(iss.input)}" is not a valid label value: at most 63 letters, digits, "-", "_", "."` }),
);

export const percentage = z.number({ error: 'expected a percentage (a number from 0 to 100)' })
  .min(0, { error: 'must be between 0 and 100' }).max(100, { error: 'must be between 0 and 100' });

export const count = (min: number) => z.number({ error: 'expected a whole number' })
  .int({ error: 'expected a whole number' }).min(min, { error: `must be at least ${min}` }).max(2 ** 31 - 1);

export const port = z.number({ error: 'expected a port number' })
  .int({ error: 'expected a whole port number' }).min(1, { error: 'must be between 1 and 65535' }).max(65535, { error: 'must be between 1 and 65535' });

/** A JavaScript regular expression (what the sidecar evaluates). */
export const regex = z.string().check((ctx) => {
  try { new RegExp(ctx.value); } catch (e) {
    ctx.issues.push({ code: 'custom', message: `invalid regular expression: ${(e as Error).message}`, input: ctx.value });
  }
});

/** HTTP header names match case-insensitively; stored lower-case. */
export const headerName = z.string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { error: (iss) => `"${String(iss.input)}" is not a valid HTTP header name` })
  .transform((v) => v.toLowerCase());

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
export const method = z.enum(METHODS);

export const ipOrNone = z.string({ error: 'expected an IP address or "None"' })
  .refine((v) => v === 'None' || net.isIP(v) !== 0, { error: (iss) => `"${String(iss.input)}" is not an IP address or "None"` });

/** Metadata of our own kinds: strict. */
export const metadata = obj({
  name: dnsLabel,
  namespace: dnsLabel.optional(),
  labels: labels.optional(),
}).transform((m) => ({ name: m.name, namespace: m.namespace ?? 'default', labels: m.labels ?? {} }));

/**
 * Metadata of imported Kubernetes documents: the bookkeeping fields a
 * `kubectl get -o yaml` export carries (uid, resourceVersion, annotations...)
 * are accepted and not kept.
 */
export const importedMetadata = z.looseObject({
  name: dnsLabel,
  namespace: dnsLabel.optional(),
  labels: labels.optional(),
}).transform((m) => ({ name: m.name, namespace: m.namespace ?? 'default', labels: m.labels ?? {} }));
