/**
 * `meshwork demo`: registers the run, builds the cluster, relays the
 * dashboard to 127.0.0.1 in the machine's own namespace, draws the live view,
 * plays the story, and removes everything on Ctrl-C, on --duration, or on
 * any failure. `downRuns` is `meshwork demo --down`.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as readline from 'node:readline';
import { MeshworkError } from '../lib/errors';
import { allNamespaces, makePlan, ADMIN_PORT, APP_PORT } from './plan';
import { buildCluster, type Cluster } from './cluster';
import {
  DemoRunError, listRuns, newRunId, ownerAlive, processStart, reapDeadRuns, runDir, teardownRun, writeRecord, type RunRecord,
} from './runs';
import { createObserver, hubRequest, relayPath, type Observation } from './observe';
import { renderLine, renderScreen, type ViewState } from './view';
import { createStory, type CanaryDecision } from './story';
import { createStoreRelay, type StoreRelay } from './store-relay';

export interface DemoOptions {
  hosts: number;
  story: boolean;
  store?: string;
  /** Seconds; undefined runs until SIGINT/SIGTERM. */
  duration?: number;
  /** Root-namespace port of the dashboard relay (0: any free port). */
  port: number;
  jsonEvents?: string;
  stepSeconds: number;
  rate: number;
  /** Redraw the screen (a terminal) or print a line every few seconds. */
  live: boolean;
  out: (s: string) => void;
}

type Event = Record<string, unknown> & { type: string };

function eventSink(file: string | undefined): { emit(ev: Event): void; close(): void } {
  const fd = file ? (file === '-' ? 1 : fs.openSync(file, 'a')) : undefined;
  return {
    emit(ev) { if (fd !== undefined) fs.writeSync(fd, `${JSON.stringify({ at: new Date().toISOString(), ...ev })}\n`); },
    close() { if (fd !== undefined && fd !== 1) fs.closeSync(fd); },
  };
}

/** 127.0.0.1:port in this namespace, each connection piped to the hub's unix socket. */
function startRelay(socketPath: string, port: number): Promise<net.Server> {
  const server = net.createServer((c) => {
    const u = net.connect(socketPath);
    const end = () => { c.destroy(); u.destroy(); };
    c.on('error', end); u.on('error', end);
    c.pipe(u).pipe(c);
  });
  return new Promise((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve(server)));
}

export async function runDemo(o: DemoOptions): Promise<number> {
  if (process.getuid?.() !== 0) throw new MeshworkError('EDEMO', 'the demo builds network namespaces and needs root: run it with sudo');
  const reaped = await reapDeadRuns();
  if (reaped.length) o.out(`removed leftovers of ${reaped.length} earlier demo run(s) whose process is gone: ${reaped.join(', ')}\n`);

  const id = newRunId();
  const plan = makePlan(id, o.hosts, o.store !== undefined);
  const storeSpec = o.store ?? `file:${runDir(id)}/store`;
  const record: RunRecord = {
    id, pid: process.pid, pidStart: processStart(process.pid) ?? '', startedAt: new Date().toISOString(),
    dir: runDir(id), namespaces: allNamespaces(plan), etcNetns: [],
    sharedStore: o.store !== undefined ? { spec: o.store, namespace: plan.namespace, network: plan.network } : undefined,
  };
  writeRecord(record);
  const events = eventSink(o.jsonEvents);
  const log: string[] = [];
  const say = (msg: string, ev?: Record<string, unknown>) => {
    log.push(msg);
    if (!o.live) o.out(`${msg}\n`);
    events.emit({ type: 'say', message: msg, ...(ev ?? {}) } as Event);
  };
  events.emit({ type: 'run', id, hosts: o.hosts, story: o.story, store: storeSpec });

  let cluster: Cluster | undefined;
  let relay: net.Server | undefined;
  let storeRelay: StoreRelay | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopReason: string | undefined;
  let failure: string | undefined;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((resolve) => { wake = resolve; });
  const stop = (why: string, fail?: string) => {
    if (stopReason) return;
    stopReason = why;
    failure = fail;
    wake();
  };
  const onSignal = (sig: string) => () => stop(`${sig} received`);
  const sigint = onSignal('SIGINT');
  const sigterm = onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);

  try {
    o.out(`meshwork demo ${id}: a virtual cluster in network namespaces ${id}-* (run dir ${record.dir})\n`);
    storeRelay = createStoreRelay(storeSpec);
    const building = buildCluster(
      {
        plan, record, storeSpec, insideStoreSpec: storeRelay?.insideSpec ?? storeSpec,
        onNamespace: storeRelay ? (p) => storeRelay!.addNamespace(p) : undefined,
        timing: { stepSeconds: o.stepSeconds }, rate: o.rate, canary: o.story, say: (m) => say(m, { step: 'build' }) },
      (msg) => stop('a component died', msg),
    );
    cluster = await Promise.race([building, stopped.then(() => undefined)]);
    if (!cluster) {
      // Interrupted while building: let the build settle so its children are known, then tear down.
      cluster = await building.catch(() => undefined);
      if (failure) throw new DemoRunError(failure);
      o.out(`stopped while building (${stopReason})\n`);
      return 0;
    }
    const c = cluster;

    // The hub reports readiness and the canary decisions as JSON lines.
    let canaryWeight = 10;
    let canaryPhase = o.story ? 'Pending' : 'off (--no-story)';
    const v2 = c.pods.find((p) => p.plan.app === 'reviews' && p.plan.version === 'v2')!;
    const story = createStory({ failAtWeight: 50, failRate: 0.5, victim: 'reviews-v1-a', canarySubset: 'v2' }, {
      say: (m, ev) => say(m, ev),
      async failCanary(rate) {
        const r = await hubRequest(c.hubSocket, relayPath(`http://${v2.ip}:${APP_PORT}/admin/fail?rate=${rate}`), 'POST').catch((e) => ({ status: 0, body: String(e) }));
        if (r.status !== 200) say(`could not make reviews v2 fail: ${r.body.trim()}`, { type: 'warning' });
      },
      killEndpoint: (pod) => c.killApp(pod),
    });
    let hubReady!: () => void;
    const ready = new Promise<void>((r) => { hubReady = r; });
    readline.createInterface({ input: c.hub.stdout! }).on('line', (line) => {
      let ev: any;
      try { ev = JSON.parse(line); } catch { return; }
      if (ev.type === 'hub-ready') hubReady();
      else if (ev.type === 'hub-error') { events.emit({ type: 'hub-error', message: ev.message }); if (ev.fatal) stop('the hub failed', `the hub (dashboard and canary controller) failed: ${ev.message}`); }
      else if (ev.type === 'canary') {
        if (typeof ev.toWeight === 'number') canaryWeight = ev.toWeight;
        canaryPhase = ev.action === 'rollback' ? 'RolledBack' : ev.action === 'complete' ? 'Succeeded' : 'Progressing';
        events.emit({ type: 'canary', action: ev.action, fromWeight: ev.fromWeight, toWeight: ev.toWeight, reason: ev.reason });
        void story.onCanary(ev as CanaryDecision);
      }
    });
    await Promise.race([ready, stopped]);
    if (stopReason) throw new DemoRunError(failure ?? `stopped before the hub was ready (${stopReason})`);

    relay = await startRelay(c.hubSocket, o.port);
    const port = (relay.address() as net.AddressInfo).port;
    const dashboardUrl = `http://127.0.0.1:${port}/dashboard/`;
    o.out(`dashboard: ${dashboardUrl}\n`);
    events.emit({ type: 'ready', dashboard: dashboardUrl, pods: c.pods.map((p) => ({ pod: p.plan.name, ip: p.ip, host: p.plan.host.name })) });
    say(o.story
      ? `traffic flows; the canary reviews v2 is analysed every ${o.stepSeconds} s`
      : 'traffic flows; steady state (--no-story)', { step: 'running' });

    const callers = c.pods.filter((p) => p.plan.role !== 'backend');
    const frontend = c.pods.find((p) => p.plan.role === 'frontend')!;
    const observer = createObserver({
      socket: c.hubSocket,
      metricsUrls: callers.map((p) => `http://${p.ip}:${ADMIN_PORT}/metrics`),
      endpointsUrls: [`http://${frontend.ip}:${ADMIN_PORT}/endpoints`],
    });
    const started = Date.now();
    if (o.duration !== undefined) setTimeout(() => stop(`--duration ${o.duration} s reached`), o.duration * 1000).unref();
    let ticks = 0;
    const tick = async () => {
      let obs: Observation | undefined;
      try { obs = await observer.observe(); } catch { obs = undefined; }
      const st: ViewState = {
        title: `meshwork demo ${id} — ${o.hosts} hosts, ${c.pods.length} pods`, dashboardUrl,
        elapsedSeconds: (Date.now() - started) / 1000, canaryWeight, canaryPhase, log,
      };
      if (obs) {
        events.emit({ type: 'stats', rows: obs.rows, endpoints: obs.endpoints, canaryWeight, errors: obs.errors });
        if (o.story) story.onObservation(obs);
      }
      if (stopReason) return;
      if (o.live) o.out(renderScreen(obs, st));
      else if (ticks++ % 5 === 0) o.out(`${renderLine(obs, st)}\n`);
    };
    const loop = async () => { await tick(); if (!stopReason) timer = setTimeout(loop, 1000); };
    void loop();
    await stopped;
    return failure ? 1 : 0;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    failure = failure ?? msg;
    if (process.env.MESHWORK_DEBUG && err instanceof Error) o.out(`${err.stack}\n`);
    o.out(`\nmeshwork demo: ${msg}\n(logs of every component are in ${record.dir}/logs until cleanup; rerun with MESHWORK_DEMO_KEEP_LOGS=1 to keep them)\n`);
    if (process.env.MESHWORK_DEMO_KEEP_LOGS) {
      try { fs.cpSync(`${record.dir}/logs`, `/tmp/${id}-logs`, { recursive: true }); o.out(`logs copied to /tmp/${id}-logs\n`); } catch { /* no logs yet */ }
    }
    events.emit({ type: 'error', message: msg });
    return 1;
  } finally {
    if (timer) clearTimeout(timer);
    stopReason = stopReason ?? 'done';
    if (failure) o.out(`\nstopping: ${failure}\n`);
    o.out(`removing demo ${id}: processes, namespaces, links, nft tables, files…\n`);
    relay?.close();
    await cluster?.stop().catch(() => {});
    storeRelay?.close();
    const problems = await teardownRun(id, record);
    events.emit({ type: 'removed', id, problems });
    events.close();
    o.out(problems.length ? `left behind: ${problems.join('; ')}\n` : `demo ${id} removed; nothing left behind.\n`);
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }
}

/** `--down [id]`: stops live runs (SIGTERM to their owner, then by force) and removes dead runs' leftovers. */
export async function downRuns(id: string | undefined, out: (s: string) => void): Promise<number> {
  if (process.getuid?.() !== 0) throw new MeshworkError('EDEMO', 'removing demo namespaces needs root: run it with sudo');
  const runs = listRuns().filter((r) => !id || r.id === id);
  if (id && runs.length === 0) { out(`no demo run ${id}\n`); return 0; }
  if (runs.length === 0) { out('no demo runs to remove\n'); return 0; }
  for (const r of runs) {
    if (r.record && ownerAlive(r.record)) {
      out(`stopping demo ${r.id} (pid ${r.record.pid})…\n`);
      try { process.kill(r.record.pid, 'SIGTERM'); } catch { /* gone meanwhile */ }
      const deadline = Date.now() + 20_000;
      while (fs.existsSync(runDir(r.id)) && ownerAlive(r.record) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 200));
    }
    const problems = await teardownRun(r.id, r.record);
    out(problems.length ? `demo ${r.id}: ${problems.join('; ')}\n` : `demo ${r.id} removed\n`);
  }
  return 0;
}
