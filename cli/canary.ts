/**
 * `meshwork canary status|run|restart`: where each automated rollout stands,
 * and the controller that drives them (canary/controller.ts).
 */
import * as http from 'node:http';
import type { Command } from 'commander';
import { openStore } from '../store/open';
import { keys } from '../store/keys';
import type { Store } from '../store/types';
import { MeshworkError } from '../lib/errors';
import { createCanaryController } from '../canary/controller';
import { canaryKeys, decodeStoredPolicy, canaryWeight, type CanaryStatus } from '../canary/rollout';
import { httpMetricsSource } from '../canary/source';
import { renderRollouts, type RolloutView } from '../canary/view';
import { openExistingStore } from './status';

/** Every canary policy with its record; policies without a record yet are "Pending". */
export async function listRollouts(store: Store): Promise<RolloutView[]> {
  const [policies, records] = await Promise.all([store.list(keys.policies('TrafficPolicy')), store.list(canaryKeys.all())]);
  const byKey = new Map<string, CanaryStatus>();
  for (const kv of records.items) {
    try { byKey.set(kv.key, JSON.parse(kv.value)); } catch { /* a torn record shows as Pending */ }
  }
  const out: RolloutView[] = [];
  for (const kv of policies.items) {
    const p = decodeStoredPolicy(kv.value)?.policy;
    const c = p?.spec.canary;
    if (!p || !c) continue;
    const rec = byKey.get(canaryKeys.status(p.metadata.namespace, p.metadata.name));
    if (rec) { out.push(rec); continue; }
    let weight = 0;
    try { weight = canaryWeight(p); } catch { /* shown as 0 */ }
    out.push({ namespace: p.metadata.namespace, name: p.metadata.name, service: p.spec.service, canarySubset: c.subset, stableSubset: c.stableSubset, steps: c.steps, phase: 'Pending', weight });
  }
  return out.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

function parseListen(s: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(s);
  if (!m) throw new MeshworkError('EUSAGE', `--listen ${s}: expected HOST:PORT (e.g. 127.0.0.1:9465)`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export function register(program: Command): void {
  const canary = program.command('canary').description('automated canary rollouts declared in TrafficPolicy spec.canary');

  canary.command('status')
    .description('show where each rollout stands: phase, weight, last decision and why')
    .argument('[policy]', 'only this policy ("name" or "namespace/name")')
    .option('--json', 'print JSON (the full records, with their event logs)')
    .option('--store <spec>', 'cluster store (file:/path, etcd:http://host:2379, memory:); default $MESHWORK_STORE or file:/var/lib/meshwork')
    .action(async (policy: string | undefined, opts: { json?: boolean; store?: string }) => {
      const store = await openExistingStore(opts.store);
      try {
        let rollouts = await listRollouts(store);
        if (policy) {
          const [ns, name] = policy.includes('/') ? policy.split('/') : [undefined, policy];
          rollouts = rollouts.filter((r) => r.name === name && (!ns || r.namespace === ns));
          if (rollouts.length === 0) throw new MeshworkError('ENOTFOUND', `no TrafficPolicy "${policy}" with a canary`);
        }
        process.stdout.write(opts.json ? JSON.stringify(rollouts, null, 2) + '\n' : renderRollouts(rollouts, Date.now()));
      } finally {
        await store.close();
      }
    });

  canary.command('restart')
    .description('forget a finished or rolled-back rollout so the controller starts it again')
    .argument('<policy>', '"namespace/name" (namespace defaults to "default")')
    .option('--store <spec>', 'cluster store; default $MESHWORK_STORE or file:/var/lib/meshwork')
    .action(async (policy: string, opts: { store?: string }) => {
      const [ns, name] = policy.includes('/') ? policy.split('/') : ['default', policy];
      const store = await openStore(opts.store ?? process.env.MESHWORK_STORE);
      try {
        const existed = await store.delete(canaryKeys.status(ns, name));
        process.stdout.write(existed ? `rollout ${ns}/${name} will start over on the controller's next pass\n` : `no rollout record for ${ns}/${name}\n`);
      } finally {
        await store.close();
      }
    });

  canary.command('run')
    .description('run the canary controller until interrupted')
    .option('--store <spec>', 'cluster store; default $MESHWORK_STORE or file:/var/lib/meshwork')
    .option('--scrape <url>', 'a sidecar /metrics URL to read (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--listen <host:port>', "serve the controller's own /metrics and the dashboard (/dashboard/) here")
    .option('--min-requests <n>', 'fewest canary requests per interval to judge it', (v) => Number(v), 1)
    .action(async (opts: { store?: string; scrape: string[]; listen?: string; minRequests: number }) => {
      if (opts.scrape.length === 0) throw new MeshworkError('EUSAGE', 'canary run: give at least one --scrape URL of a sidecar /metrics endpoint');
      const store = await openStore(opts.store ?? process.env.MESHWORK_STORE);
      const source = httpMetricsSource({ urls: opts.scrape });
      const controller = createCanaryController({
        store,
        metrics: source,
        minRequests: opts.minRequests,
        onEvent: (id, ev) => process.stdout.write(`${ev.at} ${id} ${ev.action} ${ev.fromWeight}% -> ${ev.toWeight}%: ${ev.reason}\n`),
        onError: (err) => process.stderr.write(`meshwork canary: ${err.message}\n`),
      });
      let server: http.Server | undefined;
      let dashboard: { stop(): Promise<void> } | undefined;
      if (opts.listen) {
        const { host, port } = parseListen(opts.listen);
        // The dashboard reads the same sidecars and store; loaded only when served.
        const { createDashboard } = await import('../agent/dashboard');
        const dash = createDashboard({ metrics: source, store });
        dashboard = dash;
        server = http.createServer(async (req, res) => {
          if (dash(req, res)) return;
          if (req.url !== '/metrics') { res.writeHead(404).end(); return; }
          res.writeHead(200, { 'content-type': controller.metrics.registry.contentType });
          res.end(await controller.metrics.registry.metrics());
        });
        await new Promise<void>((resolve, reject) => server!.once('error', reject).listen(port, host, resolve));
        const a = server.address() as { address: string; port: number };
        process.stdout.write(`canary controller metrics on http://${a.address}:${a.port}/metrics, dashboard on http://${a.address}:${a.port}/dashboard/\n`);
        await dash.start();
      }
      await controller.start();
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await controller.stop();
      await dashboard?.stop();
      server?.close();
      await store.close();
    });
}
