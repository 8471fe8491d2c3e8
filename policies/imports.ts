/**
 * What the SMI TrafficSplit and Gateway API HTTPRoute imports share: they
 * route to other *services*, where meshwork routes to *subsets* of one
 * service. A backend service becomes a subset of the root service whose labels
 * are the backend's selector; the root service itself is "all endpoints".
 * Their weights are relative and become percentages summing to 100.
 */
import type { Finding } from './issues';
import type { ObjectMeta, Service, Subset, TrafficPolicy } from './model';

/** Finds a Service of the apply set or the store. */
export type ServiceLookup = (namespace: string, name: string) => Service | undefined;

/** An imported document, converted once every Service it names is known. */
export interface PendingImport {
  metadata: ObjectMeta;
  convert(lookup: ServiceLookup): { policy?: TrafficPolicy; findings: Finding[] };
}

/**
 * Relative weights to whole percentages summing to 100 (largest remainder,
 * ties to the earlier backend), or undefined when every weight is zero.
 */
export function toPercentages(weights: number[]): number[] | undefined {
  const total = weights.reduce((a, b) => a + b, 0);
  if (total <= 0) return undefined;
  const exact = weights.map((w) => (w * 100) / total);
  const out = exact.map(Math.floor);
  let left = 100 - out.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) { if (left-- <= 0) break; out[i]++; }
  return out;
}

/** Collects the subsets a set of backend services turns into. */
export class SubsetBuilder {
  readonly subsets: Subset[] = [];
  constructor(private readonly root: Service, private readonly lookup: ServiceLookup, private readonly findings: Finding[]) {}

  /** The subset name for backend service `name`; "" for the root; undefined after reporting a finding. */
  subsetFor(namespace: string, name: string, path: Array<string | number>): string | undefined {
    if (namespace === this.root.metadata.namespace && name === this.root.metadata.name) return '';
    if (this.subsets.some((s) => s.name === name)) return name;
    const svc = this.lookup(namespace, name);
    if (!svc) {
      this.findings.push({ path, message: `backend service \`${name}.${namespace}\` is neither in this apply set nor in the store` });
      return undefined;
    }
    if (namespace !== this.root.metadata.namespace) {
      this.findings.push({ path, message: `backend service \`${name}.${namespace}\` is in another namespace than \`${this.root.metadata.name}\`; meshwork splits among endpoints of one namespace` });
      return undefined;
    }
    const sel = svc.spec.selector;
    const rootSel = this.root.spec.selector;
    const missing = Object.entries(rootSel).filter(([k, v]) => sel[k] !== v);
    if (Object.keys(sel).length === 0 || missing.length > 0) {
      this.findings.push({
        path,
        message: `backend service \`${name}\` must select a subset of \`${this.root.metadata.name}\`'s endpoints: its selector needs ${Object.entries(rootSel).map(([k, v]) => `${k}=${v}`).join(', ') || 'at least one label'}`,
      });
      return undefined;
    }
    this.subsets.push({ name, labels: { ...sel } });
    return name;
  }
}

/** The root Service of an import, or a finding. */
export function rootService(lookup: ServiceLookup, namespace: string, name: string, path: Array<string | number>, findings: Finding[]): Service | undefined {
  const svc = lookup(namespace, name);
  if (!svc) findings.push({ path, message: `service \`${name}.${namespace}\` is neither in this apply set nor in the store` });
  else if (svc.spec.type === 'ExternalName') { findings.push({ path, message: `service \`${name}\` is an ExternalName service; traffic policies apply to ClusterIP services` }); return undefined; }
  return svc;
}
