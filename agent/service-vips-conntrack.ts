/**
 * UDP has no connection end: a client that keeps one socket (a resolver, a
 * metrics agent) keeps its conntrack entry, and with it the DNAT to an
 * endpoint that has gone, until the entry idles out (30 s to 180 s). As
 * kube-proxy does, we delete those entries when an endpoint leaves a UDP VIP,
 * so the next datagram is balanced again. TCP needs nothing: a new
 * connection is a new entry, and an old one ends with its endpoint.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { MeshworkError } from '../lib/errors';
import { inNetnsSync } from '../lib/netns';
import type { VipTable } from './service-vips-model';

export interface StaleFlow { family: 4 | 6; vip: string; port: number; backend: string }

/** UDP backends that were behind a VIP port in `prev` and are not in `next`. */
export function staleUdpFlows(prev: VipTable, next: VipTable): StaleFlow[] {
  const now = new Map(next.entries.map((e) => [e.id, new Set(e.backends.map((b) => b.ip))]));
  const out: StaleFlow[] = [];
  for (const e of prev.entries) {
    if (e.protocol !== 'udp') continue;
    const keep = now.get(e.id);
    for (const b of e.backends) if (!keep?.has(b.ip)) out.push({ family: e.family, vip: e.vip, port: e.port, backend: b.ip });
  }
  return out;
}

export class ConntrackError extends MeshworkError {
  constructor(message: string, readonly missing = false, options?: { cause?: unknown }) { super('ECONNTRACK', message, options); }
}

export type ConntrackFlusher = (flows: StaleFlow[]) => Promise<void>;

/** Deletes the entries with `conntrack -D` (conntrack-tools), inside `netnsPath` when given. */
export function conntrackFlusher(o: { netnsPath?: string; path?: string; timeoutMs?: number } = {}): ConntrackFlusher {
  const runOne = (f: StaleFlow) => new Promise<void>((resolve, reject) => {
    const args = ['-D', '-f', f.family === 4 ? 'ipv4' : 'ipv6', '-p', 'udp', '--orig-dst', f.vip, '--orig-port-dst', String(f.port), '--dst-nat', f.backend];
    const start = (): ChildProcess => spawn(o.path ?? 'conntrack', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let child: ChildProcess;
    try { child = o.netnsPath ? inNetnsSync(o.netnsPath, start) : start(); } catch (err) { reject(err); return; }
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 10_000);
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ConntrackError(`cannot run conntrack: ${err.message}`, err.code === 'ENOENT', { cause: err }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      // Exit 1 with "0 flow entries" only means there was nothing to delete.
      if (code === 0 || (code === 1 && /\b0 flow entries/.test(stderr))) resolve();
      else reject(new ConntrackError(`conntrack ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
    });
  });
  return async (flows) => {
    for (const f of flows) await runOne(f);
  };
}
