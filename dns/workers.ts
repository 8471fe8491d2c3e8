/**
 * Serving on every core: the primary process owns the cluster view (one list
 * and watch of the store) and ships each new snapshot to N worker processes;
 * each worker runs a full DNS server on the shared UDP/TCP sockets with a
 * replica of the view. Workers send their metric tallies to the primary,
 * which exposes them. A worker that dies is replaced.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Registry } from 'prom-client';
import type { ClusterView, Logger } from './cluster-view';
import { createReplicaView } from './cluster-view';
import type { ViewData } from './cluster-index';
import { createDnsMetrics, type Tallies } from './metrics';
import { createDnsServer, type DnsServerOptions } from './server';

type ToWorker = { t: 'view'; data: ViewData };
type ToPrimary = { t: 'ready' } | { t: 'tallies'; tallies: Tallies } | { t: 'failed'; message: string };

export interface WorkersOptions {
  workers: number;
  /** Primary only: opens the store-backed view. */
  openView(): Promise<{ view: ClusterView; close(): Promise<void> }>;
  server: Omit<DnsServerOptions, 'view' | 'registry' | 'metrics'>;
  registry?: Registry;
  logger?: Logger;
}

export interface Running { stop(): Promise<void>; ready: Promise<void> }

export function isDnsWorker(): boolean { return cluster.isWorker; }

export async function runDnsWorkers(opts: WorkersOptions): Promise<Running> {
  return cluster.isPrimary ? runPrimary(opts) : runWorker(opts);
}

async function runPrimary(opts: WorkersOptions): Promise<Running> {
  const metrics = createDnsMetrics(opts.registry);
  const { view, close } = await opts.openView();
  const workers = new Set<Worker>();
  let stopping = false;
  let readyCount = 0;
  let signalReady!: () => void;
  let signalFailed!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => { signalReady = res; signalFailed = rej; });
  ready.catch(() => undefined);

  const send = (w: Worker): void => { if (w.isConnected()) w.send({ t: 'view', data: view.data() } satisfies ToWorker); };
  const unsubscribe = view.onChange(() => { for (const w of workers) send(w); });

  const fork = (): void => {
    const w = cluster.fork();
    workers.add(w);
    w.on('online', () => send(w));
    w.on('message', (m: ToPrimary) => {
      if (m.t === 'tallies') metrics.merge(m.tallies);
      else if (m.t === 'ready' && ++readyCount === opts.workers) signalReady();
      else if (m.t === 'failed') { signalFailed(new Error(m.message)); stopping = true; }
    });
    w.on('exit', (code, signal) => {
      workers.delete(w);
      if (stopping) return;
      opts.logger?.warn(`dns: worker ${w.process.pid} exited (${signal ?? code}); starting another`);
      fork();
    });
  };
  for (let i = 0; i < opts.workers; i++) fork();

  return {
    ready,
    async stop() {
      stopping = true;
      unsubscribe();
      await Promise.all([...workers].map((w) => new Promise<void>((res) => {
        const t = setTimeout(() => { w.kill('SIGKILL'); res(); }, 3000);
        w.once('exit', () => { clearTimeout(t); res(); });
        w.kill('SIGTERM');
      })));
      await close();
    },
  };
}

async function runWorker(opts: WorkersOptions): Promise<Running> {
  const view = createReplicaView();
  const metrics = createDnsMetrics(undefined, { ship: true });
  const first = new Promise<void>((res) => {
    process.on('message', (m: ToWorker) => { if (m?.t === 'view') { view.apply(m.data); res(); } });
  });
  await first;
  const server = createDnsServer({ ...opts.server, view, metrics, logger: opts.logger });
  try {
    await server.start();
  } catch (err) {
    // The primary reports it; this worker just leaves.
    process.send?.({ t: 'failed', message: (err as Error).message } satisfies ToPrimary, () => process.exit(1));
    return new Promise<Running>(() => undefined);
  }
  const timer = setInterval(() => process.send?.({ t: 'tallies', tallies: metrics.drain() } satisfies ToPrimary), 1000);
  timer.unref();
  process.send?.({ t: 'ready' } satisfies ToPrimary);
  const stop = async () => { clearInterval(timer); await server.stop(); process.disconnect?.(); };
  process.once('SIGTERM', () => { void stop().finally(() => process.exit(0)); });
  return { ready: Promise.resolve(), stop };
}
