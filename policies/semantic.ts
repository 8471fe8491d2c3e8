/**
 * Rules that need a whole document: duplicate names, weights summing to 100,
 * references to subsets the policy defines, canary steps, Service type
 * consistency. Each broken rule is a finding; nothing is silently corrected.
 * Paths are those of the YAML form, so findings can be located in the file.
 */
import * as net from 'node:net';
import type { Finding } from './issues';
import type { Service, TrafficPolicy, WeightedSubset } from './model';

function duplicates<T>(items: T[], keyOf: (t: T) => string | undefined, report: (index: number, key: string) => void): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const k = keyOf(item);
    if (k === undefined) return;
    if (seen.has(k)) report(i, k);
    seen.add(k);
  });
}

export function checkService(svc: Service): Finding[] {
  const out: Finding[] = [];
  const s = svc.spec;
  duplicates(s.ports, (p) => p.name, (i, k) => out.push({ path: ['spec', 'ports', i, 'name'], message: `duplicate port name \`${k}\`` }));
  duplicates(s.ports, (p) => `${p.port}/${p.protocol}`, (i, k) => out.push({ path: ['spec', 'ports', i, 'port'], message: `duplicate port ${k}` }));
  if (s.ports.length > 1) {
    s.ports.forEach((p, i) => { if (!p.name) out.push({ path: ['spec', 'ports', i], message: 'missing `name`: every port of a service with several ports needs a name' }); });
  }
  if (s.type === 'ExternalName') {
    if (!s.externalName) out.push({ path: ['spec'], message: 'missing `externalName`: a service of type ExternalName needs one' });
    if (s.clusterIP !== undefined || s.clusterIPs !== undefined) out.push({ path: ['spec', s.clusterIP !== undefined ? 'clusterIP' : 'clusterIPs'], message: 'an ExternalName service has no cluster IP; remove it' });
    if (Object.keys(s.selector).length > 0) out.push({ path: ['spec', 'selector'], message: 'an ExternalName service selects no endpoints; remove the selector' });
  } else {
    if (s.externalName !== undefined) out.push({ path: ['spec', 'externalName'], message: 'externalName needs `type: ExternalName`' });
    const headless = s.clusterIP === 'None';
    if (!headless && s.ports.length === 0) out.push({ path: ['spec'], message: 'missing `ports`: a ClusterIP service needs at least one port (or clusterIP: None for headless)' });
    const ips = s.clusterIPs ?? [];
    if (s.clusterIP !== undefined && ips.length > 0 && ips[0] !== s.clusterIP) {
      out.push({ path: ['spec', 'clusterIPs', 0], message: `clusterIPs[0] must equal clusterIP (${s.clusterIP})` });
    }
    if (ips.length > 2) out.push({ path: ['spec', 'clusterIPs'], message: 'at most two cluster IPs (one IPv4, one IPv6)' });
    if (ips.length === 2 && (ips.includes('None') || net.isIP(ips[0]) === net.isIP(ips[1]))) {
      out.push({ path: ['spec', 'clusterIPs', 1], message: 'two cluster IPs must be one IPv4 and one IPv6 address' });
    }
  }
  return out;
}

export function checkTrafficPolicy(tp: TrafficPolicy): Finding[] {
  const out: Finding[] = [];
  const s = tp.spec;
  const subsets = new Set(s.subsets.map((x) => x.name));
  duplicates(s.subsets, (x) => x.name, (i, k) => out.push({ path: ['spec', 'subsets', i, 'name'], message: `duplicate subset \`${k}\`` }));
  duplicates(s.subsets, (x) => JSON.stringify(Object.entries(x.labels).sort()), (i) => out.push({ path: ['spec', 'subsets', i, 'labels'], message: 'two subsets with the same labels' }));
  duplicates(s.routes, (r) => r.name, (i, k) => out.push({ path: ['spec', 'routes', i, 'name'], message: `duplicate route \`${k}\`` }));

  const knownSubset = (name: string, path: Array<string | number>) => {
    if (name !== '' && !subsets.has(name)) {
      const defined = [...subsets].map((n) => `\`${n}\``).join(', ') || 'none';
      out.push({ path, message: `subset \`${name}\` is not defined by this policy (subsets: ${defined})` });
    }
  };
  s.routes.forEach((r, i) => {
    const base = ['spec', 'routes', i];
    r.backends.forEach((b, j) => knownSubset(b.subset, [...base, 'backends', j, 'subset']));
    duplicates(r.backends, (b) => b.subset, (j, k) => out.push({ path: [...base, 'backends', j, 'subset'], message: k ? `subset \`${k}\` listed twice in one route` : 'the whole service listed twice in one route' }));
    const sum = r.backends.reduce((a, b: WeightedSubset) => a + b.weight, 0);
    if (sum !== 100) out.push({ path: [...base, 'backends'], message: `weights sum to ${sum}; the weights of a route must sum to 100 (${r.backends.map((b) => `${b.subset || '(all)'} ${b.weight}`).join(' + ')})` });
    if (r.mirror) knownSubset(r.mirror.subset, [...base, 'mirror', 'subset']);
    if (r.retries?.perTryTimeoutMs !== undefined && r.timeoutMs !== undefined && r.retries.perTryTimeoutMs > r.timeoutMs) {
      out.push({ path: [...base, 'retries', 'perTryTimeout'], message: 'perTryTimeout is longer than the route timeout, so no retry could ever run' });
    }
  });
  if (s.retries?.perTryTimeoutMs !== undefined && s.timeoutMs !== undefined && s.retries.perTryTimeoutMs > s.timeoutMs) {
    out.push({ path: ['spec', 'retries', 'perTryTimeout'], message: 'perTryTimeout is longer than the timeout, so no retry could ever run' });
  }

  const c = s.canary;
  if (c) {
    knownSubset(c.subset, ['spec', 'canary', 'subset']);
    knownSubset(c.stableSubset, ['spec', 'canary', 'stableSubset']);
    if (c.subset === c.stableSubset) out.push({ path: ['spec', 'canary', 'stableSubset'], message: 'the canary and the stable subset must differ' });
    c.steps.forEach((w, i) => {
      if (i > 0 && w <= c.steps[i - 1]) out.push({ path: ['spec', 'canary', 'steps', i], message: `steps must ascend: ${w} follows ${c.steps[i - 1]}` });
    });
    if (c.steps[c.steps.length - 1] !== 100) out.push({ path: ['spec', 'canary', 'steps', c.steps.length - 1], message: 'the last step must be 100 (the canary takes all traffic)' });
    if (c.route !== undefined && !s.routes.some((r) => r.name === c.route)) {
      out.push({ path: ['spec', 'canary', 'route'], message: `route \`${c.route}\` is not defined by this policy` });
    } else if (s.routes.length === 0) {
      out.push({ path: ['spec', 'canary'], message: 'a canary drives the split of a route; define at least one route' });
    }
  }
  return out;
}
