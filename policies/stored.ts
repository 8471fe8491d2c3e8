/**
 * Documents as the store holds them: the model (policies/model.ts) as JSON at
 * keys.policy(kind, namespace, name). Reading one back validates it through
 * the same schema as user input, so a hand-edited or corrupt entry is refused
 * with its key named instead of reaching DNS or a sidecar.
 */
import { keys } from '../store/keys';
import type { KeyValue, Store } from '../store/types';
import { PolicyValidationError } from './errors';
import { loadPolicies } from './load';
import { toManifest } from './manifest';
import type { PolicyDocument, Service, TrafficPolicy } from './model';

export const KINDS = ['Service', 'TrafficPolicy'] as const;
export type Kind = (typeof KINDS)[number];

export const keyOf = (doc: PolicyDocument) => keys.policy(doc.kind, doc.metadata.namespace, doc.metadata.name);

export function encodeStored(doc: PolicyDocument): string { return JSON.stringify(doc); }

export function decodeStored(key: string, value: string): PolicyDocument {
  let manifest: unknown;
  try { manifest = toManifest(JSON.parse(value) as PolicyDocument); } catch (e) {
    throw new PolicyValidationError([{ file: key, line: 1, column: 1, path: '', message: `not a stored policy document: ${(e as Error).message}` }]);
  }
  const r = loadPolicies([{ file: key, text: JSON.stringify(manifest) }], { checkReferences: false });
  if (r.issues.length > 0) throw new PolicyValidationError(r.issues);
  const doc = r.documents[0]?.document;
  if (!doc || key !== keyOf(doc)) {
    throw new PolicyValidationError([{ file: key, line: 1, column: 1, path: '', message: 'stored under a key that does not match its kind, namespace and name' }]);
  }
  return doc;
}

/** Every stored document with the revision it was listed at; undecodable entries are returned apart. */
export interface StoredState {
  revision: number;
  docs: Map<string, { doc: PolicyDocument; kv: KeyValue }>;
  invalid: Array<{ key: string; error: Error }>;
}

export async function readStored(store: Store): Promise<StoredState> {
  const list = await store.list(keys.policies());
  const docs = new Map<string, { doc: PolicyDocument; kv: KeyValue }>();
  const invalid: StoredState['invalid'] = [];
  for (const kv of list.items) {
    try { docs.set(kv.key, { doc: decodeStored(kv.key, kv.value), kv }); } catch (e) { invalid.push({ key: kv.key, error: e as Error }); }
  }
  return { revision: list.revision, docs, invalid };
}

export function servicesOf(state: StoredState): Service[] {
  return [...state.docs.values()].map((e) => e.doc).filter((d): d is Service => d.kind === 'Service');
}
export function trafficPoliciesOf(state: StoredState): TrafficPolicy[] {
  return [...state.docs.values()].map((e) => e.doc).filter((d): d is TrafficPolicy => d.kind === 'TrafficPolicy');
}

/** Canonical JSON (sorted keys), to tell "unchanged" from "configured". */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => (v as any)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson((v as any)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
