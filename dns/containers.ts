/**
 * Container names, as Docker's embedded DNS answers them on user-defined
 * networks: a container's name and aliases resolve to its addresses on the
 * networks the asking container shares with it ("name" or "name.<network>").
 * Several containers sharing an alias return all addresses, rotated on each
 * answer, so these answers are never reused from the packet cache.
 */
import { isIPv6 } from 'node:net';
import type { ClusterView } from './cluster-view';
import { RCODE, TYPE } from './wire';
import * as rr from './records';
import type { Answer, Handler } from './chain';

export function createContainerNames(opts: { view: ClusterView; ttl?: number }): Handler {
  const ttl = opts.ttl ?? 5;
  const turns = new Map<string, number>();

  return {
    name: 'containers',
    async serve(q, _ctx, next): Promise<Answer> {
      if (!q.client) return next(q);
      const idx = opts.view.current();
      const nets = idx.networksByIp.get(q.client);
      if (!nets) return next(q);
      const ips: string[] = [];
      for (const net of nets) {
        const names = idx.containers.get(net);
        let found = names?.get(q.name);
        const dot = q.name.lastIndexOf('.');
        if (!found && dot > 0 && q.name.slice(dot + 1) === net.toLowerCase()) found = names?.get(q.name.slice(0, dot));
        for (const ip of found ?? []) if (!ips.includes(ip)) ips.push(ip);
      }
      if (ips.length === 0) return next(q);
      const want = q.type === TYPE.ANY ? ips : ips.filter((ip) => (q.type === TYPE.AAAA ? isIPv6(ip) : q.type === TYPE.A ? !isIPv6(ip) : false));
      const key = `${nets.join(',')}|${q.name}`;
      const turn = turns.get(key) ?? 0;
      turns.set(key, turn + 1);
      if (turns.size > 10_000) turns.clear();
      const start = want.length ? turn % want.length : 0;
      const rotated = [...want.slice(start), ...want.slice(0, start)];
      return { rcode: RCODE.NOERROR, aa: true, answers: rotated.map((ip) => rr.address(q.name, ttl, ip)), authority: [], additional: [], reuse: 0 };
    },
  };
}
