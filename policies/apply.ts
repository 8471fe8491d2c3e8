/**
 * Apply and delete: validate the whole set against what the store holds,
 * allocate cluster IPs, then write everything in one transaction guarded by
 * the revisions that were read. Nothing is written unless every document is
 * valid; if the store changed meanwhile, the whole plan is redone.
 */
import { keys } from '../store/keys';
import type { Store, TxnCompare, TxnOp } from '../store/types';
import { canonicalIp, cidrContains, DEFAULT_SERVICE_CIDR, parseCidr, pickClusterIp, type Cidr } from './cidr';
import { PolicyConflictError, PolicyNotFoundError, PolicyValidationError, type PolicyIssue } from './errors';
import { loadPoliciesOrThrow, nsName, serviceKeyOf, type LoadedDocument, type PolicySource } from './load';
import type { PolicyDocument, Service, SourceRef } from './model';
import { canonicalJson, encodeStored, keyOf, readStored, servicesOf, trafficPoliciesOf, type Kind, type StoredState } from './stored';

export type Action = 'created' | 'configured' | 'unchanged';

export interface ApplyEntry {
  kind: Kind;
  namespace: string;
  name: string;
  action: Action;
  before?: PolicyDocument;
  after: PolicyDocument;
  source: SourceRef;
  /** apiVersion/kind as written, e.g. "gateway.networking.k8s.io/v1/HTTPRoute" for an import. */
  writtenAs: string;
}

export interface ApplyOptions {
  /** Range cluster IPs are allocated from; default 10.96.0.0/16. */
  serviceCidr?: string;
  /** Plan and report, write nothing. */
  dryRun?: boolean;
  /** Appended to unresolved-reference errors. */
  unresolvedHint?: string;
}

export interface ApplyResult { entries: ApplyEntry[]; applied: boolean; revision: number }

const MAX_ATTEMPTS = 8;

export async function applyPolicies(store: Store, sources: PolicySource[], opts: ApplyOptions = {}): Promise<ApplyResult> {
  const cidr = parseCidr(opts.serviceCidr ?? DEFAULT_SERVICE_CIDR);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const state = await readStored(store);
    const loaded = loadPoliciesOrThrow(sources, {
      services: servicesOf(state), trafficPolicies: trafficPoliciesOf(state), unresolvedHint: opts.unresolvedHint,
    });
    const ips = await store.list(keys.clusterIps());
    const plan = planApply(state, loaded, cidr, new Map(ips.items.map((kv) => [kv.key, kv])));
    if (opts.dryRun || plan.ops.length === 0) return { entries: plan.entries, applied: false, revision: state.revision };
    if (await store.txn(plan.compares, plan.ops)) {
      // The store revision right after: watchers have the change once they reach it.
      const after = await store.list(keys.policies());
      return { entries: plan.entries, applied: true, revision: after.revision };
    }
  }
  throw new PolicyConflictError(`the store kept changing during apply (${MAX_ATTEMPTS} attempts); try again`);
}

interface Plan { entries: ApplyEntry[]; compares: TxnCompare[]; ops: TxnOp[] }

function planApply(state: StoredState, loaded: LoadedDocument[], cidr: Cidr, ipKeys: Map<string, { value: string; modRevision: number }>): Plan {
  const plan: Plan = { entries: [], compares: [], ops: [] };
  const issues: PolicyIssue[] = [];
  const claimed = new Set<string>(); // ip keys this plan reserves
  const taken = (ip: string) => ipKeys.has(keys.clusterIp(ip)) || claimed.has(keys.clusterIp(ip));
  // Explicit addresses of the set first, so an allocation never takes one of them.
  for (const l of loaded) {
    const d = l.document;
    if (d.kind !== 'Service' || d.spec.type !== 'ClusterIP') continue;
    for (const ip of [d.spec.clusterIP, ...(d.spec.clusterIPs ?? [])]) if (ip && ip !== 'None') claimed.add(keys.clusterIp(canonicalIp(ip)));
  }

  for (const l of loaded) {
    const key = keyOf(l.document);
    const existing = state.docs.get(key);
    let after = l.document;
    if (after.kind === 'Service') {
      const prev = existing?.doc.kind === 'Service' ? existing.doc : undefined;
      const r = resolveClusterIp(after, prev, cidr, ipKeys, taken, (path, msg) => issues.push(l.locate(path, msg)));
      after = r.service;
      for (const ip of r.reserve) {
        const k = keys.clusterIp(ip);
        claimed.add(k);
        if (ipKeys.get(k)?.value === owner(after)) continue; // already ours
        plan.compares.push({ key: k, modRevision: 0 });
        plan.ops.push({ op: 'put', key: k, value: owner(after) });
      }
      for (const ip of r.release) releaseIp(plan, ipKeys, ip, owner(after));
    }
    const action: Action = !existing ? 'created' : canonicalJson(existing.doc) === canonicalJson(after) ? 'unchanged' : 'configured';
    plan.entries.push({
      kind: after.kind, namespace: after.metadata.namespace, name: after.metadata.name, action, before: existing?.doc, after, source: l.source, writtenAs: l.writtenAs,
    });
    if (action === 'unchanged') continue;
    plan.compares.push({ key, modRevision: existing?.kv.modRevision ?? 0 });
    plan.ops.push({ op: 'put', key, value: encodeStored(after) });
  }
  if (issues.length > 0) throw new PolicyValidationError(issues);
  return plan;
}

const owner = (svc: Service) => nsName(svc.metadata.namespace, svc.metadata.name);

function releaseIp(plan: Plan, ipKeys: Map<string, { value: string; modRevision: number }>, ip: string, who: string): void {
  const k = keys.clusterIp(canonicalIp(ip));
  const kv = ipKeys.get(k);
  if (!kv || kv.value !== who) return; // not ours to free
  plan.compares.push({ key: k, modRevision: kv.modRevision });
  plan.ops.push({ op: 'delete', key: k });
}

/**
 * The Service as it will be stored: cluster IP kept from before, checked when
 * explicit, or allocated. Cluster IPs are immutable, as in Kubernetes: a
 * different address needs the service deleted first.
 */
function resolveClusterIp(
  svc: Service, prev: Service | undefined, cidr: Cidr,
  ipKeys: Map<string, { value: string }>, taken: (ip: string) => boolean,
  fail: (path: Array<string | number>, message: string) => void,
): { service: Service; reserve: string[]; release: string[] } {
  const who = owner(svc);
  const prevIps = prev?.spec.type === 'ClusterIP' ? [prev.spec.clusterIP, ...(prev.spec.clusterIPs ?? [])].filter((ip): ip is string => !!ip && ip !== 'None') : [];
  const release = (keep: string[]) => prevIps.filter((ip) => !keep.includes(canonicalIp(ip)));
  if (svc.spec.type === 'ExternalName') return { service: svc, reserve: [], release: release([]) };

  const spec = { ...svc.spec };
  const prevPrimary = prev?.spec.type === 'ClusterIP' ? prev.spec.clusterIP : undefined;
  if (spec.clusterIP === undefined && spec.clusterIPs?.length) spec.clusterIP = spec.clusterIPs[0];
  if (spec.clusterIP === undefined && prevPrimary !== undefined) {
    // Omitted on re-apply: keep what was allocated, as `kubectl apply` does.
    spec.clusterIP = prevPrimary;
    if (prev?.spec.clusterIPs) spec.clusterIPs = [...prev.spec.clusterIPs];
  } else if (spec.clusterIP !== undefined && prevPrimary !== undefined && canonicalIp(spec.clusterIP) !== canonicalIp(prevPrimary)) {
    fail(['spec', 'clusterIP'], `clusterIP cannot change from ${prevPrimary} to ${spec.clusterIP}; delete the service and apply it again`);
    return { service: svc, reserve: [], release: [] };
  }
  if (spec.clusterIP === 'None') return { service: { ...svc, spec }, reserve: [], release: [] };

  if (spec.clusterIP === undefined) {
    const ip = pickClusterIp(cidr, who, taken);
    if (!ip) { fail(['spec'], `no free cluster IP left in ${cidr.text}`); return { service: svc, reserve: [], release: [] }; }
    spec.clusterIP = ip;
    return { service: { ...svc, spec }, reserve: [ip], release: [] };
  }
  const wanted = [...new Set([spec.clusterIP, ...(spec.clusterIPs ?? [])].map(canonicalIp))];
  wanted.forEach((ip, i) => {
    const path = i === 0 ? ['spec', 'clusterIP'] : ['spec', 'clusterIPs', i];
    const holder = ipKeys.get(keys.clusterIp(ip))?.value;
    if (holder !== undefined && holder !== who) fail(path, `cluster IP ${ip} is already allocated to service ${holder}`);
    else if (i === 0 && !prevIps.map(canonicalIp).includes(ip) && !cidrContains(cidr, ip) && cidrFamily(ip) === cidr.family) {
      fail(path, `cluster IP ${ip} is outside the service CIDR ${cidr.text}`);
    }
  });
  return { service: { ...svc, spec }, reserve: wanted, release: release(wanted) };
}

const cidrFamily = (ip: string) => (ip.includes(':') ? 6 : 4);

export interface DeleteTarget { kind: Kind; namespace: string; name: string }
export interface DeleteResult { deleted: DeleteTarget[]; notFound: DeleteTarget[] }

/**
 * Deletes documents and frees their cluster IPs in one transaction. Refuses
 * to delete a Service that a remaining TrafficPolicy still governs.
 */
export async function deletePolicies(store: Store, targets: DeleteTarget[], opts: { ignoreNotFound?: boolean } = {}): Promise<DeleteResult> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const state = await readStored(store);
    const ips = await store.list(keys.clusterIps());
    const ipKeys = new Map(ips.items.map((kv) => [kv.key, kv]));
    const plan: Plan = { entries: [], compares: [], ops: [] };
    const result: DeleteResult = { deleted: [], notFound: [] };
    const going = new Set<string>();
    for (const t of targets) {
      const key = keys.policy(t.kind, t.namespace, t.name);
      const e = state.docs.get(key);
      const raw = e ? undefined : await store.get(key); // a corrupt entry can still be deleted
      if (!e && !raw) { result.notFound.push(t); continue; }
      if (going.has(key)) continue;
      going.add(key);
      result.deleted.push(t);
      plan.compares.push({ key, modRevision: e?.kv.modRevision ?? raw!.modRevision });
      plan.ops.push({ op: 'delete', key });
      if (e?.doc.kind === 'Service') {
        for (const ip of [e.doc.spec.clusterIP, ...(e.doc.spec.clusterIPs ?? [])]) {
          if (ip && ip !== 'None') releaseIp(plan, ipKeys, ip, owner(e.doc));
        }
      }
    }
    if (result.notFound.length > 0 && !opts.ignoreNotFound) {
      const t = result.notFound[0];
      const more = result.notFound.length > 1 ? ` (and ${result.notFound.length - 1} more)` : '';
      const rest = result.deleted.length > 0 ? '; nothing was deleted (--ignore-not-found deletes the rest)' : '';
      throw new PolicyNotFoundError(`${t.kind.toLowerCase()}/${t.name} in namespace ${t.namespace}${more}`, rest);
    }
    for (const tp of trafficPoliciesOf(state)) {
      if (going.has(keyOf(tp))) continue;
      const [ns, name] = serviceKeyOf(tp).split('/');
      if (going.has(keys.policy('Service', ns, name))) {
        throw new PolicyConflictError(`service ${name} in namespace ${ns} is governed by TrafficPolicy ${tp.metadata.name}; delete the policy first, or both together`);
      }
    }
    if (plan.ops.length === 0 || await store.txn(plan.compares, plan.ops)) return result;
  }
  throw new PolicyConflictError(`the store kept changing during delete (${MAX_ATTEMPTS} attempts); try again`);
}
