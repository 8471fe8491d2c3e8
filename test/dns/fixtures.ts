/** Cluster data shared by the DNS tests. */
import type { Service } from '../../policies/model';
import type { EndpointRecord } from '../../store/records';

export function svc(name: string, namespace: string, spec: Partial<Service['spec']>): Service {
  return { kind: 'Service', metadata: { name, namespace, labels: {} }, spec: { type: 'ClusterIP', selector: {}, ports: [], ...spec } };
}

export function ep(id: string, o: Partial<EndpointRecord> & { ips: string[] }): EndpointRecord {
  return { network: 'net1', containerId: id, ifname: 'eth0', namespace: 'team-a', pod: id, node: 'n1', labels: {}, ready: true, ...o };
}

export const services: Service[] = [
  svc('web', 'team-a', { selector: { app: 'web' }, clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00:96::10'], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }, { port: 81, protocol: 'TCP', targetPort: 81 }] }),
  svc('db', 'team-a', { selector: { app: 'db' }, clusterIP: 'None', ports: [{ name: 'pg', port: 5432, protocol: 'TCP', targetPort: 5432 }] }),
  svc('empty', 'team-a', { selector: { app: 'nothing' }, clusterIP: 'None', ports: [] }),
  svc('ext', 'team-a', { type: 'ExternalName', externalName: 'web.team-a.svc.cluster.local', ports: [] }),
  svc('api', 'team-b', { selector: { app: 'api' }, clusterIP: '10.96.0.20', ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 }] }),
];

export const endpoints: EndpointRecord[] = [
  ep('c1', { hostname: 'db-0', ips: ['10.1.0.5', 'fd00:1::5'], labels: { app: 'db' } }),
  ep('c2', { ips: ['10.1.0.6'], labels: { app: 'db' } }),
  ep('c3', { hostname: 'db-2', ips: ['10.1.0.7'], labels: { app: 'db' }, ready: false }),
  ep('c4', { hostname: 'db-x', ips: ['10.1.0.8'], labels: { app: 'db' }, namespace: 'team-b' }),
  ep('w1', { hostname: 'web-1', aliases: ['frontend'], ips: ['10.1.0.11'], labels: { app: 'web' } }),
  ep('w2', { hostname: 'web-2', aliases: ['frontend'], ips: ['10.1.0.12'], labels: { app: 'web' } }),
  ep('o1', { hostname: 'other', ips: ['10.2.0.5'], network: 'net2' }),
];
