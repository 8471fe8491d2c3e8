/**
 * The one way documents get in: YAML text -> located documents -> schema ->
 * model -> semantic checks -> cross-document checks. Either every document of
 * the set is valid and typed objects come out, or `issues` lists every
 * problem found (sorted by file and position) and nothing should be applied.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { z } from 'zod';
import { PolicyInputError, PolicyValidationError, type PolicyIssue } from './errors';
import { GATEWAY_VERSIONS, httpRouteDocument, importHTTPRoute } from './gateway';
import type { PendingImport } from './imports';
import { findingsOfZodIssue, locateFinding, type Finding } from './issues';
import type { PolicyDocument, Service, SourceRef, TrafficPolicy } from './model';
import { API_VERSION, serviceDocument, trafficPolicyDocument } from './schema';
import { checkService, checkTrafficPolicy } from './semantic';
import { SMI_VERSIONS, importTrafficSplit, trafficSplitDocument } from './smi';
import { parseYamlFile, type SourceDocument } from './source';
import { nearest } from './suggest';

export interface PolicySource { file: string; text: string }

export interface LoadedDocument {
  document: PolicyDocument;
  source: SourceRef;
  /** apiVersion/kind it was written as (an import keeps its original kind here). */
  writtenAs: string;
  /** Locates a field of the document, for errors found later (e.g. a cluster IP taken in the store). */
  locate(path: ReadonlyArray<string | number>, message: string): PolicyIssue;
}

/** What already exists in the cluster, for references the set does not satisfy. */
export interface PolicyContext {
  services?: Iterable<Service>;
  trafficPolicies?: Iterable<TrafficPolicy>;
  /** Appended to "not found" reference errors, e.g. a hint to pass --store. */
  unresolvedHint?: string;
  /** False: check each document alone, not its references to other documents (stored documents). */
  checkReferences?: boolean;
}

export interface LoadResult { documents: LoadedDocument[]; issues: PolicyIssue[] }

type Handler =
  | { schema: z.ZodType<PolicyDocument>; native: true }
  | { schema: z.ZodType<unknown>; native: false; importer: (doc: any) => PendingImport };

const HANDLERS: Record<string, Record<string, Handler>> = {
  [API_VERSION]: {
    Service: { schema: serviceDocument, native: true },
    TrafficPolicy: { schema: trafficPolicyDocument, native: true },
  },
  ...Object.fromEntries(SMI_VERSIONS.map((v) => [v, { TrafficSplit: { schema: trafficSplitDocument, native: false, importer: importTrafficSplit } as Handler }])),
  ...Object.fromEntries(GATEWAY_VERSIONS.map((v) => [v, { HTTPRoute: { schema: httpRouteDocument, native: false, importer: importHTTPRoute } as Handler }])),
};
const ALL_KINDS = [...new Set(Object.values(HANDLERS).flatMap((k) => Object.keys(k)))];

export const nsName = (namespace: string, name: string) => `${namespace}/${name}`;

/** `service` of a TrafficPolicy ("name" or "name.namespace") as namespace/name. */
export function serviceKeyOf(tp: TrafficPolicy): string {
  const [name, ns = tp.metadata.namespace] = tp.spec.service.split('.');
  return nsName(ns, name);
}

interface Parsed { src: SourceDocument; writtenAs: string; doc?: PolicyDocument; pending?: PendingImport }

export function loadPolicies(sources: PolicySource[], ctx: PolicyContext = {}): LoadResult {
  const issues: PolicyIssue[] = [];
  const parsed: Parsed[] = [];
  const report = (src: SourceDocument, f: Finding) => issues.push(locateFinding(src, f));

  for (const { file, text } of sources) {
    const r = parseYamlFile(file, text);
    issues.push(...r.issues);
    for (const src of r.documents) {
      const p = parseOne(src, report);
      if (p) parsed.push(p);
    }
  }

  // Services known to this set (they shadow the store's copies).
  const services = new Map<string, Service>();
  for (const s of ctx.services ?? []) services.set(nsName(s.metadata.namespace, s.metadata.name), s);
  for (const p of parsed) if (p.doc?.kind === 'Service') services.set(nsName(p.doc.metadata.namespace, p.doc.metadata.name), p.doc);
  const lookup = (ns: string, name: string) => services.get(nsName(ns, name));

  for (const p of parsed) {
    if (!p.pending) continue;
    const r = p.pending.convert(lookup);
    r.findings.forEach((f) => report(p.src, f));
    if (r.policy) {
      checkTrafficPolicy(r.policy).forEach((f) => report(p.src, { ...f, message: `after conversion: ${f.message}` }));
      p.doc = r.policy;
    }
  }

  if (ctx.checkReferences !== false) crossChecks(parsed, lookup, ctx, report);
  issues.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
  const documents = issues.length > 0 ? [] : parsed.map((p) => ({
    document: p.doc as PolicyDocument,
    source: { file: p.src.file, line: p.src.line, column: p.src.column },
    writtenAs: p.writtenAs,
    locate: (path: ReadonlyArray<string | number>, message: string) => locateFinding(p.src, { path, message }),
  }));
  return { documents, issues };
}

/** Like loadPolicies, but throws PolicyValidationError listing every issue. */
export function loadPoliciesOrThrow(sources: PolicySource[], ctx: PolicyContext = {}): LoadedDocument[] {
  const r = loadPolicies(sources, ctx);
  if (r.issues.length > 0) throw new PolicyValidationError(r.issues);
  return r.documents;
}

function parseOne(src: SourceDocument, report: (src: SourceDocument, f: Finding) => void): Parsed | undefined {
  const v = src.value as Record<string, unknown>;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    report(src, { path: [], message: 'expected a document (a mapping with apiVersion, kind, metadata, spec)' });
    return undefined;
  }
  const { apiVersion, kind } = v;
  if (typeof kind !== 'string') { report(src, { path: ['kind'], message: `missing \`kind\`; expected one of ${ALL_KINDS.join(', ')}` }); return undefined; }
  if (!ALL_KINDS.includes(kind)) {
    const hint = nearest(kind, ALL_KINDS);
    report(src, { path: ['kind'], message: `unknown kind \`${kind}\`${hint ? `; did you mean \`${hint}\`?` : `; expected one of ${ALL_KINDS.join(', ')}`}` });
    return undefined;
  }
  const handler = typeof apiVersion === 'string' ? HANDLERS[apiVersion]?.[kind] : undefined;
  if (!handler) {
    const versions = Object.keys(HANDLERS).filter((a) => HANDLERS[a][kind]);
    report(src, { path: ['apiVersion'], message: `${apiVersion === undefined ? 'missing `apiVersion`' : `apiVersion \`${String(apiVersion)}\` does not define ${kind}`}; expected ${versions.join(' or ')}` });
    return undefined;
  }
  const r = handler.schema.safeParse(v);
  if (!r.success) {
    for (const iss of r.error.issues) findingsOfZodIssue(iss, v).forEach((f) => report(src, f));
    return undefined;
  }
  const writtenAs = `${apiVersion}/${kind}`;
  if (handler.native) {
    const doc = r.data as PolicyDocument;
    const findings = doc.kind === 'Service' ? checkService(doc) : checkTrafficPolicy(doc);
    findings.forEach((f) => report(src, f));
    return { src, writtenAs, doc };
  }
  return { src, writtenAs, pending: handler.importer(r.data) };
}

/** Rules across documents: unique names, references to services, one policy per service, unique cluster IPs. */
function crossChecks(parsed: Parsed[], lookup: (ns: string, name: string) => Service | undefined, ctx: PolicyContext, report: (src: SourceDocument, f: Finding) => void): void {
  const seen = new Map<string, SourceDocument>();
  const policyFor = new Map<string, string>(); // service key -> policy key
  for (const tp of ctx.trafficPolicies ?? []) policyFor.set(serviceKeyOf(tp), nsName(tp.metadata.namespace, tp.metadata.name));
  const ownPolicies = new Set(parsed.filter((p) => p.doc?.kind === 'TrafficPolicy').map((p) => nsName(p.doc!.metadata.namespace, p.doc!.metadata.name)));
  // Policies being re-applied release their claim on their old service.
  for (const [svc, pol] of [...policyFor]) if (ownPolicies.has(pol)) policyFor.delete(svc);
  const ips = new Map<string, string>();

  for (const p of parsed) {
    const d = p.doc;
    if (!d) continue;
    const id = `${d.kind}/${nsName(d.metadata.namespace, d.metadata.name)}`;
    const first = seen.get(id);
    if (first) {
      report(p.src, { path: ['metadata', 'name'], message: `duplicate ${d.kind} \`${d.metadata.name}\` in namespace \`${d.metadata.namespace}\` (first at ${first.file}:${first.line}:${first.column})` });
      continue;
    }
    seen.set(id, p.src);
    if (d.kind === 'Service') {
      for (const ip of [d.spec.clusterIP, ...(d.spec.clusterIPs ?? [])]) {
        if (!ip || ip === 'None') continue;
        const owner = ips.get(ip);
        if (owner && owner !== id) report(p.src, { path: ['spec', 'clusterIP'], message: `cluster IP ${ip} is also given to ${owner}` });
        ips.set(ip, id);
      }
      continue;
    }
    const [name, ns = d.metadata.namespace] = d.spec.service.split('.');
    const svc = lookup(ns, name);
    const path = p.pending ? [] : ['spec', 'service'];
    if (!svc) {
      report(p.src, { path, message: `service \`${name}\` in namespace \`${ns}\` is neither in this apply set nor in the store${ctx.unresolvedHint ?? ''}` });
    } else if (svc.spec.type === 'ExternalName') {
      report(p.src, { path, message: `service \`${name}\` is an ExternalName service; traffic policies apply to ClusterIP services` });
    } else if (!p.pending) {
      // A subset label that contradicts the service selector can never match an endpoint.
      d.spec.subsets.forEach((sub, i) => {
        for (const [k, v] of Object.entries(sub.labels)) {
          const want = svc.spec.selector[k];
          if (want !== undefined && want !== v) report(p.src, { path: ['spec', 'subsets', i, 'labels', k], message: `subset \`${sub.name}\` can never match: service \`${name}\` selects ${k}=${want}` });
        }
      });
    }
    const key = nsName(ns, name);
    const other = policyFor.get(key);
    const mine = nsName(d.metadata.namespace, d.metadata.name);
    if (other && other !== mine) report(p.src, { path, message: `service \`${name}\` already has TrafficPolicy \`${other}\`; one policy per service` });
    policyFor.set(key, mine);
  }
}

/** Reads FILE and DIR arguments: a directory contributes its *.yaml, *.yml and *.json files, sorted. */
export function readPolicySources(paths: string[]): PolicySource[] {
  const out: PolicySource[] = [];
  for (const p of paths) {
    let st: fs.Stats;
    try { st = fs.statSync(p); } catch (e) { throw new PolicyInputError(`${p}: no such file or directory`, { cause: e }); }
    const files = st.isDirectory()
      ? fs.readdirSync(p).filter((f) => /\.(ya?ml|json)$/.test(f)).sort().map((f) => path.join(p, f))
      : [p];
    for (const f of files) {
      try { out.push({ file: f, text: fs.readFileSync(f, 'utf8') }); } catch (e) { throw new PolicyInputError(`${f}: cannot read: ${(e as Error).message}`, { cause: e }); }
    }
  }
  return out;
}
