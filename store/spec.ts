/**
 * Parses a store spec string, the one way config and flags name a store:
 *   file:/var/lib/meshwork   (default; `file:///abs`, or a bare path)
 *   etcd:http://a:2379,http://b:2379
 *   memory:
 */
import * as path from 'node:path';
import { StoreSpecError } from './errors';

export const DEFAULT_STORE_SPEC = 'file:/var/lib/meshwork';

export type StoreSpec =
  | { kind: 'file'; dir: string }
  | { kind: 'etcd'; endpoints: string[] }
  | { kind: 'memory' };

export function parseStoreSpec(spec: string): StoreSpec {
  if (typeof spec !== 'string' || spec.trim() === '') throw new StoreSpecError(String(spec), 'empty');
  const s = spec.trim();
  if (s === 'memory:' || s === 'memory') return { kind: 'memory' };
  if (s.startsWith('etcd:')) return { kind: 'etcd', endpoints: parseEndpoints(spec, s.slice('etcd:'.length)) };
  if (s.startsWith('file:')) {
    let p = s.slice('file:'.length);
    if (p.startsWith('//')) {
      // file://host/path is not supported; file:///path is.
      if (!p.startsWith('///')) throw new StoreSpecError(spec, 'file URLs must be local: use file:/path or file:///path');
      p = p.slice(2);
    }
    if (p === '') throw new StoreSpecError(spec, 'missing directory after file:');
    return { kind: 'file', dir: path.resolve(p) };
  }
  // Anything else with a scheme is a typo we must not treat as a relative path.
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(s);
  if (scheme && !s.startsWith('/') && !s.startsWith('.')) throw new StoreSpecError(spec, `unknown store kind "${scheme[1]}"`);
  return { kind: 'file', dir: path.resolve(s) };
}

function parseEndpoints(spec: string, list: string): string[] {
  const parts = list.split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (parts.length === 0) throw new StoreSpecError(spec, 'no etcd endpoints after etcd:');
  return parts.map((p) => {
    let u: URL;
    try {
      u = new URL(p);
    } catch {
      throw new StoreSpecError(spec, `etcd endpoint "${p}" is not a URL like http://host:2379`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new StoreSpecError(spec, `etcd endpoint "${p}" must use http:// or https://`);
    if (!u.hostname) throw new StoreSpecError(spec, `etcd endpoint "${p}" has no host`);
    // The client would connect without them, and fail later with a puzzling "user name is empty".
    if (u.username || u.password) {
      throw new StoreSpecError(redact(spec), `etcd endpoint "${redact(p)}" has credentials: etcd authentication is not supported (remove user:password@)`);
    }
    if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) throw new StoreSpecError(spec, `etcd endpoint "${p}" must not have a path or query`);
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    return `${u.protocol}//${u.hostname}:${port}`;
  });
}

/** The text with any URL password replaced, so an error never shows it. */
function redact(text: string): string {
  return text.replace(/(\/\/[^/@,:\s]*):[^/@,\s]*@/g, '$1:***@');
}
