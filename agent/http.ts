/** The agent's HTTP endpoint: `/metrics` (Prometheus text) and `/healthz`. */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { MeshworkError } from '../lib/errors';

export interface HttpDeps {
  registry: Registry;
  /** `ok: false` answers 503, so a supervisor can tell a wedged agent. */
  health: () => { ok: boolean; detail: Record<string, unknown> };
}

export interface AgentHttp {
  start(host: string, port: number): Promise<AddressInfo>;
  stop(): Promise<void>;
}

/** Parses "ADDR:PORT", "[v6]:PORT" or ":PORT" (loopback). */
export function parseListen(text: string, flag = '--metrics'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new MeshworkError('EAGENT_CONFIG', `${flag}: expected ADDR:PORT (e.g. 127.0.0.1:9490), got ${JSON.stringify(text)}`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export function createAgentHttp(deps: HttpDeps): AgentHttp {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405).end(); return; }
    if (url === '/metrics') {
      deps.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': deps.registry.contentType }).end(text),
        (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err?.message ?? err)),
      );
      return;
    }
    if (url === '/healthz') {
      const h = deps.health();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify({ ok: h.ok, ...h.detail })}\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
  return {
    start: (host, port) => new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => { server.off('error', reject); resolve(server.address() as AddressInfo); });
    }),
    stop: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}
