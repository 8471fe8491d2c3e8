/**
 * Import of Gateway API HTTPRoute (gateway.networking.k8s.io/v1, v1beta1) in
 * its mesh (GAMMA) form: the parentRef is the Service whose traffic the route
 * governs; each rule becomes a route whose weighted backendRefs become
 * subsets. Supported: path (Exact, PathPrefix, RegularExpression), method and
 * header (Exact, RegularExpression) matches, weights, the RequestMirror
 * filter, timeouts.request. Anything else is refused by name rather than
 * silently ignored.
 */
import { z } from 'zod';
import { dnsLabel, duration, headerName, importedMetadata, method, obj, port, prune, regex } from './fields';
import { PendingImport, rootService, SubsetBuilder, toPercentages } from './imports';
import type { Finding } from './issues';
import type { Route, RouteMatch, StringMatch, TrafficPolicy } from './model';

export const GATEWAY_VERSIONS = ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'];

const serviceRef = {
  group: z.literal('', { error: 'only core Services ("" group) are supported' }).optional(),
  kind: z.literal('Service', { error: 'only Services are supported' }).optional(),
  name: dnsLabel,
  namespace: dnsLabel.optional(),
  port: port.optional(),
};

const parentRef = obj({ ...serviceRef, sectionName: z.string().optional() });
const backendRef = obj({ ...serviceRef, weight: z.number().int().min(0).max(1_000_000).optional() }, ['filters']);

const pathMatch = obj({
  type: z.enum(['Exact', 'PathPrefix', 'RegularExpression']).optional(),
  value: z.string().optional(),
});
const headerMatch = obj({ type: z.enum(['Exact', 'RegularExpression']).optional(), name: headerName, value: z.string() })
  .check((ctx) => {
    if (ctx.value.type === 'RegularExpression') {
      const r = regex.safeParse(ctx.value.value);
      if (!r.success) ctx.issues.push({ code: 'custom', path: ['value'], message: r.error.issues[0].message, input: ctx.value });
    }
  });

const match = obj({ path: pathMatch.optional(), method: method.optional(), headers: z.array(headerMatch).optional() }, ['queryParams'])
  .check((ctx) => {
    const p = ctx.value.path;
    if (p?.type === 'RegularExpression' && p.value !== undefined) {
      const r = regex.safeParse(p.value);
      if (!r.success) ctx.issues.push({ code: 'custom', path: ['path', 'value'], message: r.error.issues[0].message, input: ctx.value });
    }
  });

const mirrorFilter = obj({
  type: z.literal('RequestMirror', { error: 'meshwork supports only the RequestMirror filter' }),
  requestMirror: obj({
    backendRef: obj(serviceRef),
    percent: z.number().int().min(0).max(100).optional(),
    fraction: obj({ numerator: z.number().int().min(0), denominator: z.number().int().min(1).optional() }).optional(),
  }),
}, ['requestHeaderModifier', 'responseHeaderModifier', 'requestRedirect', 'urlRewrite', 'extensionRef', 'cors', 'externalAuth']);

const rule = obj({
  name: dnsLabel.optional(),
  matches: z.array(match).optional(),
  filters: z.array(mirrorFilter).max(1, { error: 'at most one RequestMirror filter per rule' }).optional(),
  backendRefs: z.array(backendRef).min(1, { error: 'a rule needs at least one backendRef' }),
  timeouts: obj({ request: duration.optional() }, ['backendRequest']).optional(),
}, ['retry', 'sessionPersistence']);

export const httpRouteDocument = obj({
  apiVersion: z.enum(GATEWAY_VERSIONS as [string, ...string[]]),
  kind: z.literal('HTTPRoute'),
  metadata: importedMetadata,
  spec: obj({
    parentRefs: z.array(parentRef).length(1, { error: 'meshwork imports an HTTPRoute with exactly one parentRef: the Service it governs' }),
    rules: z.array(rule).min(1, { error: 'an HTTPRoute needs at least one rule' }),
  }, ['hostnames']),
  status: z.unknown().optional(),
}).meta({ title: 'HTTPRoute (Gateway API, mesh form, imported)' });

type HTTPRoute = z.output<typeof httpRouteDocument>;

function toPathMatch(p: { type?: string; value?: string }): StringMatch | undefined {
  const value = p.value ?? '/';
  if (p.type === 'Exact') return { exact: value };
  if (p.type === 'RegularExpression') return { regex: value };
  return value === '/' ? undefined : { prefix: value }; // PathPrefix "/" matches everything
}

export function importHTTPRoute(doc: HTTPRoute): PendingImport {
  const { metadata, spec } = doc;
  const ns = metadata.namespace;
  return {
    metadata,
    convert(lookup) {
      const findings: Finding[] = [];
      const parent = spec.parentRefs[0];
      const parentNs = parent.namespace ?? ns;
      const root = rootService(lookup, parentNs, parent.name, ['spec', 'parentRefs', 0, 'name'], findings);
      if (!root) return { findings };
      const subsets = new SubsetBuilder(root, lookup, findings);
      const routes: Route[] = spec.rules.map((r, i): Route => {
        const base = ['spec', 'rules', i];
        const names = r.backendRefs.map((b, j) => subsets.subsetFor(b.namespace ?? ns, b.name, [...base, 'backendRefs', j, 'name']));
        // Gateway API: weight defaults to 1 and is relative.
        const pct = toPercentages(r.backendRefs.map((b) => b.weight ?? 1));
        if (!pct) findings.push({ path: [...base, 'backendRefs'], message: 'every weight is zero: no backend would receive traffic' });
        const matches: RouteMatch[] = (r.matches ?? []).map((m) => prune({
          path: m.path ? toPathMatch(m.path) : undefined,
          method: m.method,
          headers: m.headers?.length ? m.headers.map((h) => (h.type === 'RegularExpression' ? { name: h.name, regex: h.value } : { name: h.name, exact: h.value })) : undefined,
        }));
        const mirror = r.filters?.[0]?.requestMirror;
        let mirrorTo: Route['mirror'];
        if (mirror) {
          const subset = subsets.subsetFor(mirror.backendRef.namespace ?? ns, mirror.backendRef.name, [...base, 'filters', 0, 'requestMirror', 'backendRef', 'name']);
          const f = mirror.fraction;
          const percentage = mirror.percent ?? (f ? (f.numerator * 100) / (f.denominator ?? 100) : 100);
          if (percentage > 100) findings.push({ path: [...base, 'filters', 0, 'requestMirror', 'fraction'], message: 'a mirror fraction cannot exceed 1 (numerator greater than denominator)' });
          if (subset !== undefined) mirrorTo = { subset, percentage };
        }
        return prune({
          name: r.name ?? `rule-${i}`,
          // A match list that matches everything is the same as no match.
          matches: matches.some((m) => Object.keys(m).length === 0) ? [] : matches,
          backends: names.map((s, j) => ({ subset: s ?? '', weight: pct?.[j] ?? 0 })),
          mirror: mirrorTo,
          timeoutMs: r.timeouts?.request,
        });
      });
      if (findings.length > 0) return { findings };
      const policy: TrafficPolicy = {
        kind: 'TrafficPolicy',
        metadata,
        spec: {
          service: parentNs === ns ? parent.name : `${parent.name}.${parentNs}`,
          subsets: subsets.subsets,
          loadBalancer: { type: 'round-robin' },
          routes,
        },
      };
      return { policy, findings };
    },
  };
}
