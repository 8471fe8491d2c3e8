/**
 * Import of SMI TrafficSplit (split.smi-spec.io v1alpha1..v1alpha4): a root
 * service whose traffic is split among backend services by weight. Becomes a
 * TrafficPolicy for the root service with one route and one subset per
 * backend. `matches` (HTTPRouteGroup references) are refused: meshwork does
 * not import HTTPRouteGroup; write the route in a TrafficPolicy instead.
 */
import { z } from 'zod';
import { importedMetadata, obj } from './fields';
import { PendingImport, rootService, SubsetBuilder, toPercentages } from './imports';
import type { Finding } from './issues';
import type { TrafficPolicy } from './model';

export const SMI_VERSIONS = ['v1alpha1', 'v1alpha2', 'v1alpha3', 'v1alpha4'].map((v) => `split.smi-spec.io/${v}`);

/** v1alpha1 wrote weights as Kubernetes quantities ("500m"); later versions as integers. */
const weight = z.union([
  z.number().int().min(0),
  z.string().regex(/^[0-9]+(\.[0-9]+)?m?$/, { error: 'expected a weight: a whole number, or a quantity such as 500m' }),
], { error: 'expected a weight (a whole number)' }).transform((w) => (typeof w === 'number' ? w : w.endsWith('m') ? Number(w.slice(0, -1)) / 1000 : Number(w)));

/** "name", "name.namespace" or "name.namespace.svc.cluster.local" -> [name, namespace?] */
function splitServiceName(ref: string): [string, string | undefined] {
  const parts = ref.replace(/\.svc(\.[a-z0-9.-]+)?$/, '').split('.');
  return [parts[0], parts[1]];
}

export const trafficSplitDocument = obj({
  apiVersion: z.enum(SMI_VERSIONS as [string, ...string[]]),
  kind: z.literal('TrafficSplit'),
  metadata: importedMetadata,
  spec: obj({
    service: z.string().min(1),
    backends: z.array(obj({ service: z.string().min(1), weight })).min(1, { error: 'a TrafficSplit needs at least one backend' }),
  }, ['matches']),
  status: z.unknown().optional(),
}).meta({ title: 'TrafficSplit (SMI, imported)' });

export function importTrafficSplit(doc: z.output<typeof trafficSplitDocument>): PendingImport {
  const { metadata, spec } = doc;
  const ns = metadata.namespace;
  return {
    metadata,
    convert(lookup) {
      const findings: Finding[] = [];
      const [rootName, rootNs = ns] = splitServiceName(spec.service);
      const root = rootService(lookup, rootNs, rootName, ['spec', 'service'], findings);
      if (!root) return { findings };
      const subsets = new SubsetBuilder(root, lookup, findings);
      const names = spec.backends.map((b, i) => {
        const [n, bns = ns] = splitServiceName(b.service);
        return subsets.subsetFor(bns, n, ['spec', 'backends', i, 'service']);
      });
      const pct = toPercentages(spec.backends.map((b) => b.weight));
      if (!pct) findings.push({ path: ['spec', 'backends'], message: 'every weight is zero: no backend would receive traffic' });
      if (findings.length > 0 || !pct) return { findings };
      const policy: TrafficPolicy = {
        kind: 'TrafficPolicy',
        metadata,
        spec: {
          service: rootNs === ns ? rootName : `${rootName}.${rootNs}`,
          subsets: subsets.subsets,
          loadBalancer: { type: 'round-robin' },
          routes: [{ name: metadata.name, matches: [], backends: names.map((s, i) => ({ subset: s as string, weight: pct[i] })) }],
        },
      };
      return { policy, findings };
    },
  };
}
