/**
 * Cluster DNS in the result: with `"clusterDNS": {"server", "zone"}` in the
 * config, the result's `dns` names our server and the search list
 * `<ns>.svc.<zone> svc.<zone> <zone>` (dns/pod-config.ts), so the resolv.conf
 * the runtime writes from it finds services by short name. The config's
 * static `dns` (or IPAM's) is merged in: its nameservers after ours, its
 * search domains after the cluster ones, its options added unless they set
 * the same option. A runtime that passes `runtimeConfig.dns` (capability
 * `dns`) has already decided the pod's DNS (the kubelet's dnsPolicy, e.g.
 * `Default` must not get the cluster server): that replaces all of it.
 */
import type { Layer } from './layers';
import { CniCode, CniError, type Dns } from './types';

/** Merges `extra` under `cluster`: cluster entries first, duplicates dropped. */
export function mergeDns(cluster: Dns, extra: Dns | undefined): Dns {
  if (!extra) return cluster;
  const uniq = (xs: string[]) => [...new Set(xs)];
  const optName = (o: string) => o.split(':')[0];
  const clusterOpts = cluster.options ?? [];
  // A static `domain` joins the search list rather than standing beside it: in resolv.conf
  // `domain` and `search` exclude each other and the later line wins, so a runtime writing
  // `domain` last would drop the cluster's search list.
  const domains = [cluster.domain, extra.domain].filter((d): d is string => !!d);
  return {
    nameservers: uniq([...(cluster.nameservers ?? []), ...(extra.nameservers ?? [])]),
    search: uniq([...(cluster.search ?? []), ...domains, ...(extra.search ?? [])]),
    options: uniq([...clusterOpts, ...(extra.options ?? []).filter((o) => !clusterOpts.some((c) => optName(c) === optName(o)))]),
  };
}

export const dnsLayer: Layer = {
  name: 'cluster DNS',
  async add(ctx, result) {
    if (ctx.cluster.runtimeDNS) return { ...result, dns: ctx.cluster.runtimeDNS };
    const cd = ctx.cluster.clusterDNS;
    if (!cd) return result;
    let cluster: Dns;
    try {
      // Loaded only for networks with cluster DNS.
      const { dnsConfigFor } = require('../dns/pod-config') as typeof import('../dns/pod-config');
      cluster = dnsConfigFor(ctx.cluster.podNamespace, cd.zone, cd.server);
    } catch (err) {
      throw new CniError(CniCode.invalidConfig, `clusterDNS: ${(err as Error).message}`);
    }
    const base = result.dns && Object.keys(result.dns).length ? result.dns : ctx.att.conf.dns;
    return { ...result, dns: mergeDns(cluster, base) };
  },
  async del() { /* nothing kept */ },
  async check() { /* nothing in the kernel */ },
  async gc() { /* nothing kept */ },
};
