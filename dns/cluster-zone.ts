/**
 * The cluster zone, answered authoritatively from the cluster view following
 * the Kubernetes DNS-based service discovery specification (schema 1.1.0):
 * dns-version TXT, A/AAAA for cluster IPs, headless services, SRV for named
 * ports, PTR for cluster IPs and headless endpoints, ExternalName as CNAME,
 * the deprecated <a-b-c-d>.<ns>.pod names. Negative answers distinguish
 * NXDOMAIN from NODATA (empty non-terminals included) and carry the SOA.
 */
import { isIPv4 } from 'node:net';
import { MeshworkError } from '../lib/errors';
import type { ClusterView } from './cluster-view';
import type { ServiceEntry } from './cluster-index';
import { RCODE, TYPE, type Rr } from './wire';
import * as rr from './records';
import type { Answer, Handler } from './chain';

export const SCHEMA_VERSION = '1.1.0';

export interface ClusterZoneOptions {
  view: ClusterView;
  /** Zone name, e.g. "cluster.local" (case-insensitive, no trailing dot). */
  zone: string;
  /** TTL of every record we serve, and the SOA minimum (default 5). */
  ttl?: number;
  /** Where this server answers (`ns.dns.<zone>`, the apex's NS); wildcard addresses are left out. */
  serverAddresses?: string[];
}

/** What exists at a name: its records, or nothing at all (NXDOMAIN). */
type Node = { records: Rr[]; additional?: Rr[] } | undefined;

export function normalizeZone(zone: string): string {
  return zone.trim().replace(/\.$/, '').toLowerCase();
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** A zone as a flag gives it, checked once: its labels, at most 253 characters. `flag` names it in the error. */
export function parseZone(text: string, flag: string): string {
  const z = normalizeZone(text);
  if (!z || z.length > 253 || !z.split('.').every((l) => LABEL.test(l))) {
    throw new MeshworkError('EDNSCONFIG', `${flag}: expected a domain name such as cluster.local, got ${JSON.stringify(text)}`);
  }
  return z;
}

export function createClusterZone(opts: ClusterZoneOptions): Handler {
  const zone = normalizeZone(opts.zone);
  const ttl = opts.ttl ?? 5;
  const suffix = `.${zone}`;
  const abs = (rel: string) => `${rel}.${zone}`;
  let soaCache: { gen: number; rec: Rr } | undefined;
  const soa = (): Rr => {
    if (soaCache?.gen !== opts.view.generation) {
      const serial = Math.floor(Date.now() / 1000) >>> 0;
      soaCache = { gen: opts.view.generation, rec: rr.soa(zone, ttl, { primary: abs('ns.dns'), admin: abs('hostmaster'), serial, refresh: 7200, retry: 1800, expiration: 86400, minimum: ttl }) };
    }
    return soaCache.rec;
  };

  const own = (opts.serverAddresses ?? []).filter((a) => a !== '0.0.0.0' && a !== '::');
  const nsAddresses = (owner: string): Rr[] => own.map((ip) => rr.address(owner, ttl, ip));

  const serviceNode = (s: ServiceEntry, owner: string): Node => {
    switch (s.kind) {
      case 'external-name': return { records: [rr.cname(owner, ttl, s.externalName!)] };
      case 'cluster-ip': return { records: s.clusterIps.map((ip) => rr.address(owner, ttl, ip)) };
      case 'headless':
        // Spec 2.4.1: no ready endpoint means the name does not exist.
        if (s.targets.length === 0) return undefined;
        return { records: s.targets.flatMap((t) => t.ips.map((ip) => rr.address(owner, ttl, ip))) };
    }
  };

  const srvNode = (s: ServiceEntry, port: string, proto: string, owner: string): Node => {
    const ports = s.ports.filter((p) => `_${p.name}` === port && `_${p.protocol}` === proto);
    if (ports.length === 0 || s.kind === 'external-name') return undefined;
    const svcName = abs(`${s.name}.${s.namespace}.svc`);
    if (s.kind === 'cluster-ip') {
      return {
        records: ports.map((p) => rr.srv(owner, ttl, 0, 100, p.port, svcName)),
        additional: s.clusterIps.map((ip) => rr.address(svcName, ttl, ip)),
      };
    }
    const weight = Math.max(1, Math.floor(100 / s.targets.length));
    return {
      records: ports.flatMap((p) => s.targets.map((t) => rr.srv(owner, ttl, 0, weight, p.port, `${t.hostname}.${svcName}`))),
      additional: s.targets.flatMap((t) => t.ips.map((ip) => rr.address(`${t.hostname}.${svcName}`, ttl, ip))),
    };
  };

  /** Labels of the name relative to the zone, leftmost first. */
  const lookup = (labels: string[], owner: string): Node => {
    const idx = opts.view.current();
    const n = labels.length;
    // The apex names this server as its nameserver, ns.dns.<zone>, as the SOA does.
    if (n === 0) return { records: [soa(), rr.ns(zone, ttl, abs('ns.dns'))], additional: nsAddresses(abs('ns.dns')) };
    if (n === 1 && labels[0] === 'dns-version') return { records: [rr.txt(owner, ttl, SCHEMA_VERSION)] };
    if (n === 2 && labels[0] === 'ns' && labels[1] === 'dns') return { records: nsAddresses(owner) };
    if (n === 1 && labels[0] === 'dns') return { records: [] };
    const top = labels[n - 1];
    if (top === 'svc') {
      if (n === 1) return { records: [] };
      const ns = labels[n - 2];
      if (!idx.namespaces.has(ns)) return undefined;
      if (n === 2) return { records: [] };
      const s = idx.services.get(`${labels[n - 3]}.${ns}`);
      if (!s) return undefined;
      const base = serviceNode(s, owner);
      if (n === 3) return base;
      if (s.kind === 'headless' && s.targets.length === 0) return undefined;
      const l4 = labels[n - 4];
      if (n === 4) {
        if (l4.startsWith('_')) return s.ports.some((p) => `_${p.protocol}` === l4) && s.kind !== 'external-name' ? { records: [] } : undefined;
        if (s.kind !== 'headless') return undefined;
        const t = s.targets.find((x) => x.hostname === l4);
        return t ? { records: t.ips.map((ip) => rr.address(owner, ttl, ip)) } : undefined;
      }
      if (n === 5) return srvNode(s, labels[0], labels[1], owner);
      return undefined;
    }
    if (top === 'pod') {
      if (n <= 2) return { records: [] };
      if (n === 3) {
        const ip = labels[0].replace(/-/g, '.');
        return isIPv4(ip) && labels[0].split('-').length === 4 ? { records: [rr.a(owner, ttl, ip)] } : undefined;
      }
      return undefined;
    }
    return undefined;
  };

  const reverseLookup = (name: string): Rr[] | undefined => {
    const targets = opts.view.current().reverse.get(name);
    return targets?.map((t) => rr.ptr(name, ttl, abs(t)));
  };

  return {
    name: 'cluster',
    async serve(q, ctx, next): Promise<Answer> {
      const name = q.name;
      if (name.endsWith('.in-addr.arpa') || name.endsWith('.ip6.arpa')) {
        const ptrs = reverseLookup(name);
        if (!ptrs) return next(q);
        const answers = q.type === TYPE.PTR || q.type === TYPE.ANY ? ptrs : [];
        return { rcode: RCODE.NOERROR, aa: true, answers, authority: [], additional: [], reuse: 'view' };
      }
      if (name !== zone && !name.endsWith(suffix)) return next(q);
      const rel = name === zone ? [] : name.slice(0, -suffix.length).split('.');
      const node = lookup(rel, name);
      if (!node) return { rcode: RCODE.NXDOMAIN, aa: true, answers: [], authority: [soa()], additional: [], reuse: 'view' };
      const cname = node.records.find((r) => r.type === TYPE.CNAME);
      if (cname && q.type !== TYPE.CNAME && q.type !== TYPE.ANY) {
        // ExternalName: answer the CNAME and chase the target like a recursive server would.
        const target = opts.view.current().services.get(`${rel[0]}.${rel[1]}`)?.externalName;
        const chased = target ? await ctx.resolve(target, q.type) : undefined;
        return {
          rcode: chased?.rcode ?? RCODE.NOERROR, aa: true,
          answers: [cname, ...(chased?.answers ?? [])],
          authority: chased?.answers.length ? [] : chased?.authority ?? [],
          additional: [],
          reuse: chased ? (chased.reuse === 'view' ? 'view' : Math.min(chased.reuse, ttl)) : 'view',
        };
      }
      const answers = q.type === TYPE.ANY ? node.records : node.records.filter((r) => r.type === q.type);
      return {
        rcode: RCODE.NOERROR, aa: true, answers,
        authority: answers.length ? [] : [soa()],
        additional: answers.length ? node.additional ?? [] : [],
        reuse: 'view',
      };
    },
  };
}
