/**
 * The admin server: /metrics (Prometheus text), /ready, /config (the policy
 * and endpoints in force) and /endpoints (per endpoint: subset, breaker gate,
 * ejection, in-flight). Read-only; it shares nothing with the proxy path but
 * the state it reports.
 */
import * as http from 'node:http';
import type { RoutingTable, Upstream } from './catalog';
import type { SidecarMetrics } from './metrics';

export interface AdminDeps {
  metrics: SidecarMetrics;
  isReady(): boolean;
  table(): RoutingTable | undefined;
  inbound(): Upstream[];
  now(): number;
}

export function createAdmin(deps: AdminDeps): http.Server {
  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body, null, 2);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/metrics':
        deps.metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': deps.metrics.registry.contentType });
          res.end(text);
        }, (err) => json(res, 500, { error: String(err) }));
        return;
      case '/ready': {
        const ok = deps.isReady();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(ok ? 'ready\n' : 'not ready\n');
        return;
      }
      case '/config': {
        const t = deps.table();
        json(res, 200, t ? { services: t.snapshot.services, policies: t.snapshot.policies, endpoints: t.snapshot.endpoints } : null);
        return;
      }
      case '/endpoints': {
        const t = deps.table();
        const now = deps.now();
        const ups = [...(t?.upstreams ?? []), ...deps.inbound()];
        json(res, 200, ups.map((u) => ({
          service: u.name,
          port: u.port.port,
          endpoints: u.endpoints.map((e) => ({
            address: e.key,
            pod: e.pod,
            subsets: [...u.subsets.values()].filter((s) => s.name && s.endpoints.includes(e)).map((s) => s.name),
            weight: e.weight,
            breaker: e.gate,
            ejected: e.ejected(),
            ejectedForMs: Math.max(0, e.ejectedUntil - now),
            inflight: e.inflight,
            ewmaMs: Math.round(e.ewmaMs * 100) / 100,
          })),
        })));
        return;
      }
      default:
        json(res, 404, { error: `no admin page ${path}`, pages: ['/metrics', '/ready', '/config', '/endpoints'] });
    }
  });
}
