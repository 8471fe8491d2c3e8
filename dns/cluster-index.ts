/**
 * A pure, immutable index of what the cluster zone and container names answer,
 * built from the Service documents and endpoint records. Rebuilt whole on each
 * change and swapped atomically, so a query never sees half an update.
 */
import { isIP } from 'node:net';
import type { EndpointRecord } from '../store/records';
import type { Service } from '../policies/model';
import { isLabel, reverseName } from './records';

export interface ViewData { services: Service[]; endpoints: EndpointRecord[] }

export interface HeadlessTarget {
  /** Explicit hostname, or an id derived from the address when it has none. */
  hostname: string;
  ips: string[];
}

export interface ServiceEntry {
  name: string;
  namespace: string;
  kind: 'cluster-ip' | 'headless' | 'external-name';
  /** Cluster IPs (cluster-ip kind); empty until one is allocated. */
  clusterIps: string[];
  externalName?: string;
  /** Named ports, for SRV. */
  ports: Array<{ name: string; port: number; protocol: string }>;
  /** Ready selected endpoints (headless kind), in a stable order. */
  targets: HeadlessTarget[];
}

export interface ClusterIndex {
  /** Keyed "<service>.<namespace>", lower case. */
  services: Map<string, ServiceEntry>;
  /** Namespaces that hold at least one service (for `<ns>.svc.<zone>` existence). */
  namespaces: Set<string>;
  /** Reverse name -> PTR targets relative to the zone ("<svc>.<ns>.svc" or "<host>.<svc>.<ns>.svc"). */
  reverse: Map<string, string[]>;
  /** network -> lower-case container name or alias -> addresses. */
  containers: Map<string, Map<string, string[]>>;
  /** address -> networks it is attached to (the querier's networks). */
  networksByIp: Map<string, string[]>;
  /** Every container name and alias, bare and as "<name>.<network>": answers for these depend on who asks. */
  containerNames: Set<string>;
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const keys = Object.keys(selector);
  return keys.length > 0 && keys.every((k) => labels[k] === selector[k]);
}

/** A stable hostname for an endpoint without one: its first address, dashed. */
function derivedHostname(ep: EndpointRecord): string {
  return ep.ips[0].replace(/[.:]/g, '-').toLowerCase();
}

export function buildIndex(data: ViewData): ClusterIndex {
  const services = new Map<string, ServiceEntry>();
  const namespaces = new Set<string>();
  const reverse = new Map<string, string[]>();
  const addReverse = (ip: string, target: string): void => {
    const r = reverseName(ip);
    if (!r) return;
    const list = reverse.get(r) ?? [];
    if (!list.includes(target)) list.push(target);
    reverse.set(r, list);
  };
  const endpoints = [...data.endpoints].sort((x, y) => (x.containerId + x.ifname).localeCompare(y.containerId + y.ifname));

  for (const svc of data.services) {
    const name = svc.metadata.name.toLowerCase();
    const namespace = svc.metadata.namespace.toLowerCase();
    const key = `${name}.${namespace}`;
    const spec = svc.spec;
    const ips = (spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []).filter((ip) => isIP(ip));
    const kind: ServiceEntry['kind'] = spec.type === 'ExternalName' ? 'external-name' : spec.clusterIP === 'None' ? 'headless' : 'cluster-ip';
    const entry: ServiceEntry = {
      name, namespace, kind,
      clusterIps: kind === 'cluster-ip' ? ips : [],
      externalName: kind === 'external-name' ? spec.externalName?.replace(/\.$/, '').toLowerCase() : undefined,
      ports: spec.ports.filter((p) => p.name).map((p) => ({ name: p.name!.toLowerCase(), port: p.port, protocol: p.protocol.toLowerCase() })),
      targets: [],
    };
    if (kind === 'headless') {
      const seen = new Set<string>();
      for (const ep of endpoints) {
        if (!ep.ready || ep.ips.length === 0 || ep.namespace.toLowerCase() !== namespace || !selects(spec.selector, ep.labels)) continue;
        let hostname = ep.hostname && isLabel(ep.hostname) ? ep.hostname.toLowerCase() : derivedHostname(ep);
        if (seen.has(hostname)) hostname = derivedHostname(ep);
        seen.add(hostname);
        entry.targets.push({ hostname, ips: ep.ips });
        for (const ip of ep.ips) addReverse(ip, `${hostname}.${key}.svc`);
      }
    }
    for (const ip of entry.clusterIps) addReverse(ip, `${key}.svc`);
    services.set(key, entry);
    namespaces.add(namespace);
  }

  const containers = new Map<string, Map<string, string[]>>();
  const networksByIp = new Map<string, string[]>();
  const containerNames = new Set<string>();
  for (const ep of endpoints) {
    let names = containers.get(ep.network);
    if (!names) containers.set(ep.network, (names = new Map()));
    for (const n of new Set([ep.hostname, ...(ep.aliases ?? [])].filter((x): x is string => !!x).map((x) => x.toLowerCase()))) {
      const list = names.get(n) ?? [];
      for (const ip of ep.ips) if (!list.includes(ip)) list.push(ip);
      names.set(n, list);
      containerNames.add(n).add(`${n}.${ep.network.toLowerCase()}`);
    }
    for (const ip of ep.ips) {
      const nets = networksByIp.get(ip) ?? [];
      if (!nets.includes(ep.network)) nets.push(ep.network);
      networksByIp.set(ip, nets.sort());
    }
  }
  return { services, namespaces, reverse, containers, networksByIp, containerNames };
}
