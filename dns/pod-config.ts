/**
 * The DNS block of a CNI result for a pod: our server, and the search list
 * `<ns>.svc.<zone> svc.<zone> <zone>` so `my-svc`, `my-svc.other-ns` and full
 * names all resolve through the pod's own resolver. ndots:5 as Kubernetes
 * sets it, so names with up to four dots try the search list first.
 */
import { isIP } from 'node:net';
import { MeshworkError } from '../lib/errors';
import { normalizeZone } from './cluster-zone';
import { isLabel } from './records';

/** Matches the `dns` field of a CNI (1.0) result. */
export interface CniDns {
  nameservers: string[];
  domain?: string;
  search: string[];
  options: string[];
}

export function dnsConfigFor(podNamespace: string, zone: string, serverIp: string): CniDns {
  const ns = podNamespace.toLowerCase();
  const z = normalizeZone(zone);
  if (!isLabel(ns)) throw new MeshworkError('EDNSCONFIG', `pod namespace "${podNamespace}" is not a DNS label`);
  if (!z || !z.split('.').every(isLabel)) throw new MeshworkError('EDNSCONFIG', `zone "${zone}" is not a domain name`);
  if (!isIP(serverIp)) throw new MeshworkError('EDNSCONFIG', `DNS server "${serverIp}" is not an IP address`);
  return { nameservers: [serverIp], search: [`${ns}.svc.${z}`, `svc.${z}`, z], options: ['ndots:5'] };
}

/** The resolv.conf text a runtime writes from that block (tests and the demo use it). */
export function resolvConfText(d: CniDns): string {
  return [...d.nameservers.map((n) => `nameserver ${n}`), `search ${d.search.join(' ')}`, `options ${d.options.join(' ')}`, ''].join('\n');
}
