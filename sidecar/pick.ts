/**
 * Endpoint choice for whole connections (raw TCP, WebSocket): the same route,
 * weighted split and balancer as requests, without the per-request layers.
 */
import type { ProxyRequest } from './context';
import type { Upstream } from './catalog';
import type { Endpoint } from './endpoint';
import { matchRoute } from './stack';

export function chooseEndpoint(up: Upstream, req: ProxyRequest | undefined, random: () => number, now: number, sourceIp: string, exclude?: Set<Endpoint>): Endpoint | undefined {
  const route = req ? matchRoute(up, req) : up.routes.find((r) => r.matches.length === 0) ?? up.routes[0];
  if (!route) return undefined;
  let total = 0;
  for (const b of route.backends) total += b.weight;
  let r = random() * total;
  let subset = route.backends[0].subset;
  for (const b of route.backends) { r -= b.weight; if (r < 0) { subset = b.subset; break; } }
  const hashKey = subset.lb.type === 'ring-hash' && 'sourceIP' in subset.lb.hashOn ? sourceIp : undefined;
  return subset.balancer.pick({ now, exclude, hashKey }) ?? up.all.balancer.pick({ now, exclude, hashKey });
}
