/**
 * Makes a demo plan real: the underlay (a namespace with a bridge), hosts
 * (namespaces with a veth to it) each running `meshwork agent` with DNS, pods
 * wired by the real `meshwork-cni` overlay driver and injected with the
 * sidecar, the policies applied with `meshwork policy apply`, the bookstore
 * apps, and the hub (demo/hub.ts). Links and addresses go through the netlink
 * verbs of cni/netlink/; `ip netns add|exec` only makes namespaces and starts
 * processes in them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { withNetlink, netnsFd } from '../cni/netlink/socket';
import { linkAddBridge, linkAddVeth, linkByName, linkSetMaster, linkSetUp } from '../cni/netlink/link';
import { addrAdd } from '../cni/netlink/addr';
import { withContext } from '../lib/errors';
import {
  ADMIN_PORT, APP_PORT, CLUSTER_CIDR, INBOUND_PORT, OUTBOUND_PORT, UNDERLAY_PREFIX,
  policyYaml, type HostPlan, type Plan, type PodPlan, type StoryTiming,
} from './plan';
import { DemoRunError, type RunRecord, writeRecord } from './runs';

/** dist/ root of this build (this file is dist/demo/cluster.js). */
const DIST = path.resolve(__dirname, '..');
const REPO = path.resolve(DIST, '..');
const MESHWORK = path.join(REPO, 'bin', 'meshwork');

export interface ClusterDeps {
  plan: Plan;
  record: RunRecord;
  /** The store as the machine's own namespace reaches it (`meshwork policy apply`). */
  storeSpec: string;
  /** The store as processes inside the namespaces reach it (through demo/store-relay.ts for etcd). */
  insideStoreSpec: string;
  /** Called for each namespace right after it is made (the store relay opens its listeners there). */
  onNamespace?: (nsPath: string) => void;
  timing: StoryTiming;
  /** Loadgen requests per second. */
  rate: number;
  canary: boolean;
  say: (msg: string) => void;
}

export interface PodState { plan: PodPlan; ip: string; gateway: string; app?: ChildProcess; sidecar?: ChildProcess }

export interface Cluster {
  readonly pods: PodState[];
  readonly hub: ChildProcess;
  readonly hubSocket: string;
  /** Kills one pod's application process (the story's dying endpoint). */
  killApp(pod: string): void;
  stop(): Promise<void>;
}

const nsPath = (ns: string) => `/var/run/netns/${ns}`;

function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
    child.on('error', (e) => { clearTimeout(timer); resolve({ code: -1, stdout, stderr: stderr + String(e) }); });
    // A child that exits without reading its input must not crash us with EPIPE.
    child.stdin?.on('error', () => {});
    child.stdin?.end(opts.input);
  });
}

async function must(what: string, cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new DemoRunError(`${what}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function addNetns(ns: string, onNamespace?: (nsPath: string) => void): Promise<void> {
  await must(`create namespace ${ns}`, 'ip', ['netns', 'add', ns]);
  onNamespace?.(nsPath(ns));
  await withNetlink(nsPath(ns), async (nl) => {
    const lo = await linkByName(nl, 'lo');
    if (lo) await linkSetUp(nl, lo.index);
  });
}

/** Underlay namespace with a bridge, and one veth per host into it. */
async function buildUnderlay(plan: Plan, onNamespace?: (nsPath: string) => void): Promise<void> {
  await addNetns(plan.underlayNetns);
  await withNetlink(nsPath(plan.underlayNetns), async (nl) => {
    await linkAddBridge(nl, { name: plan.underlayBridge });
    const br = (await linkByName(nl, plan.underlayBridge))!;
    await linkSetUp(nl, br.index);
  });
  for (const h of plan.hosts) {
    await addNetns(h.netns, onNamespace);
    const fd = netnsFd(nsPath(h.netns));
    try {
      await withNetlink(nsPath(plan.underlayNetns), async (nl) => {
        await linkAddVeth(nl, { name: h.underlayPort, peerName: 'eth0', peerNetnsFd: fd });
        const port = (await linkByName(nl, h.underlayPort))!;
        const br = (await linkByName(nl, plan.underlayBridge))!;
        await linkSetMaster(nl, port.index, br.index);
        await linkSetUp(nl, port.index);
      });
    } finally {
      fs.closeSync(fd);
    }
    await withNetlink(nsPath(h.netns), async (nl) => {
      const eth = (await linkByName(nl, 'eth0'))!;
      await addrAdd(nl, eth.index, `${h.underlayIp}/24`);
      await linkSetUp(nl, eth.index);
    });
  }
}

/** Starts a long-running process inside a namespace, its output appended to a log file of the run. */
function spawnIn(dir: string, ns: string, logName: string, cmd: string, args: string[], stdout: 'log' | 'pipe' = 'log'): ChildProcess {
  const log = fs.openSync(path.join(dir, 'logs', `${logName}.log`), 'a');
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
    stdio: ['ignore', stdout === 'pipe' ? 'pipe' : log, log],
    env: { ...process.env, MESHWORK_DEBUG: '' },
  });
  fs.closeSync(log);
  return child;
}

function hostStateDir(dir: string, h: HostPlan): string { return path.join(dir, 'hosts', h.name); }

function startAgent(d: ClusterDeps, h: HostPlan): ChildProcess {
  return spawnIn(d.record.dir, h.netns, `agent-${h.index}`, process.execPath, [
    MESHWORK, 'agent', '--node', h.name, '--underlay', h.underlayIp, '--store', d.insideStoreSpec,
    '--network', d.plan.network, '--cluster-cidr', CLUSTER_CIDR, '--state-dir', hostStateDir(d.record.dir, h),
    '--lease-ttl', '10', '--dns', '0.0.0.0:53', '--leave-on-stop', '--cni-socket', path.join(hostStateDir(d.record.dir, h), 'cni.sock'),
  ]);
}

interface CniResult { ips?: Array<{ address: string; gateway?: string }> }

function cniConf(d: ClusterDeps, pod: PodPlan): Record<string, unknown> {
  const stateDir = hostStateDir(d.record.dir, pod.host);
  return {
    cniVersion: '1.0.0', name: d.plan.network, type: 'meshwork-cni', driver: 'overlay',
    nodeStateDir: stateDir, stateDir: path.join(stateDir, 'cni'),
    ipam: { type: 'meshwork', dataDir: path.join(stateDir, 'ipam') },
    // The plugin's cluster layers: the endpoint record (with the pod's labels) and the sidecar's interception.
    store: d.insideStoreSpec, node: pod.host.name,
    mesh: { outboundPort: OUTBOUND_PORT, inboundPort: INBOUND_PORT, excludeInboundPorts: [ADMIN_PORT] },
    runtimeConfig: { labels: { app: pod.app, version: pod.version }, hostname: pod.name },
  };
}

function cniEnv(d: ClusterDeps, pod: PodPlan, command: 'ADD' | 'DEL'): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CNI_COMMAND: command, CNI_CONTAINERID: pod.containerId, CNI_NETNS: nsPath(pod.netns), CNI_IFNAME: 'eth0',
    CNI_PATH: path.join(REPO, 'bin'), CNI_ARGS: `K8S_POD_NAMESPACE=${d.plan.namespace};K8S_POD_NAME=${pod.name}`,
    // The host's agent serves CNI calls on this socket; the shim runs the plugin itself when it does not answer.
    MESHWORK_CNI_SOCKET: path.join(hostStateDir(d.record.dir, pod.host), 'cni.sock'),
  };
}

/** Runs the real plugin as a runtime does (bin/meshwork-cni), inside the pod's host namespace where the agent's bridge is. */
function cniCall(d: ClusterDeps, pod: PodPlan, command: 'ADD' | 'DEL') {
  return run('ip', ['netns', 'exec', pod.host.netns, path.join(REPO, 'bin', 'meshwork-cni')], { input: JSON.stringify(cniConf(d, pod)), env: cniEnv(d, pod, command), timeoutMs: 30_000 });
}

async function cniAdd(d: ClusterDeps, pod: PodPlan): Promise<{ ip: string; gateway: string }> {
  // Code 11 means "the agent has not leased this host's subnet yet": try again.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await cniCall(d, pod, 'ADD');
    if (r.code === 0) {
      const res = JSON.parse(r.stdout) as CniResult;
      const v4 = res.ips?.find((x) => !x.address.includes(':'));
      if (!v4?.gateway) throw new DemoRunError(`CNI ADD for pod ${pod.name} gave no IPv4 address with a gateway: ${r.stdout.trim()}`);
      return { ip: v4.address.split('/')[0], gateway: v4.gateway };
    }
    let err: { code?: number; msg?: string } = {};
    try { err = JSON.parse(r.stdout); } catch { /* not JSON: report raw */ }
    if (err.code !== 11 || Date.now() > deadline) {
      throw new DemoRunError(`CNI ADD for pod ${pod.name} on ${pod.host.name} failed: ${err.msg ?? (r.stderr || r.stdout).trim()}`);
    }
    await sleep(250);
  }
}

async function wirePod(d: ClusterDeps, pod: PodPlan): Promise<PodState> {
  await addNetns(pod.netns, d.onNamespace);
  const { ip, gateway } = await cniAdd(d, pod);
  // The host's agent serves DNS on every address of its namespace, the pod's gateway included.
  const etc = `/etc/netns/${pod.netns}`;
  d.record.etcNetns.push(etc);
  writeRecord(d.record);
  fs.mkdirSync(etc, { recursive: true });
  fs.writeFileSync(path.join(etc, 'resolv.conf'), `nameserver ${gateway}\nsearch ${d.plan.namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:3\n`);
  return { plan: pod, ip, gateway };
}

function startSidecar(d: ClusterDeps, p: PodState): ChildProcess {
  return spawnIn(d.record.dir, p.plan.netns, `sidecar-${p.plan.name}`, process.execPath, [
    MESHWORK, 'sidecar', '--store', d.insideStoreSpec, '--workload', p.plan.app, '--namespace', d.plan.namespace, '--drain-ms', '500',
  ]);
}

function startApp(d: ClusterDeps, p: PodState): ChildProcess {
  const a = p.plan;
  const args = [path.join(DIST, 'demo', 'app.js'), '--cluster', d.plan.id, '--role', a.role, '--name', a.app, '--version', a.version, '--port', String(APP_PORT)];
  if (a.role === 'frontend') for (const u of a.calls) args.push('--upstream', u);
  if (a.role === 'loadgen') args.push('--target', a.calls[0], '--rate', String(d.rate));
  return spawnIn(d.record.dir, a.netns, `app-${a.name}`, process.execPath, args);
}

/** Polls an HTTP URL from inside a namespace until it answers 200 (readiness of an agent or sidecar). */
async function waitHttp(ns: string, url: string, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const probe = `fetch(${JSON.stringify(url)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`;
  while ((await run('ip', ['netns', 'exec', ns, process.execPath, '-e', probe], { timeoutMs: 10_000 })).code !== 0) {
    if (Date.now() > deadline) throw new DemoRunError(`${what} did not become ready within ${timeoutMs / 1000} s`);
    await sleep(300);
  }
}

function watchExit(child: ChildProcess, what: string, onDeath: (msg: string) => void): void {
  child.once('exit', (code, signal) => onDeath(`${what} exited (${signal ?? `code ${code}`})`));
}

export async function buildCluster(d: ClusterDeps, onDeath: (msg: string) => void): Promise<Cluster> {
  const { plan, record } = d;
  fs.mkdirSync(path.join(record.dir, 'logs'), { recursive: true });
  const children: ChildProcess[] = [];
  let stopping = false;
  const guard = (c: ChildProcess, what: string) => { children.push(c); watchExit(c, what, (m) => { if (!stopping) onDeath(m); }); return c; };
  const killed = new Set<string>();

  d.say(`building ${plan.hosts.length} hosts on an underlay bridge…`);
  try {
    await buildUnderlay(plan, d.onNamespace);
  } catch (err) { throw withContext('underlay', err); }

  d.say(`starting an agent with DNS on each host (overlay ${CLUSTER_CIDR}, VXLAN)…`);
  for (const h of plan.hosts) guard(startAgent(d, h), `agent on ${h.name}`);

  d.say('applying policies (Services, reviews 90/10 v1/v2 with a canary, retries, breakers, outlier detection)…');
  const yamlFile = path.join(record.dir, 'bookstore.yaml');
  fs.writeFileSync(yamlFile, policyYaml(d.timing, plan.namespace));
  await must('meshwork policy apply', process.execPath, [MESHWORK, 'policy', 'apply', '-f', yamlFile, '--store', d.storeSpec]);

  d.say(`wiring ${plan.pods.length} pods with meshwork-cni (overlay driver) and injecting the sidecar…`);
  const pods: PodState[] = [];
  for (const p of plan.pods) {
    try {
      pods.push(await wirePod(d, p));
    } catch (err) { throw withContext(`pod ${p.name}`, err); }
  }
  for (const p of pods) p.sidecar = guard(startSidecar(d, p), `sidecar of ${p.plan.name}`);
  for (const p of pods) await waitHttp(p.plan.netns, `http://127.0.0.1:${ADMIN_PORT}/ready`, `sidecar of ${p.plan.name}`);

  d.say('starting the bookstore: frontend → reviews (v1 ×2, v2), ratings; loadgen → frontend by name…');
  for (const p of pods.filter((x) => x.plan.role !== 'loadgen')) {
    const name = p.plan.name;
    p.app = guard(startApp(d, p), `app ${name}`);
    p.app.removeAllListeners('exit');
    p.app.once('exit', (code, signal) => { if (!stopping && !killed.has(name)) onDeath(`app ${name} exited (${signal ?? `code ${code}`})`); });
  }
  for (const p of pods.filter((x) => x.plan.role !== 'loadgen')) {
    await waitHttp(p.plan.netns, `http://127.0.0.1:${APP_PORT}/healthz`, `app ${p.plan.name}`);
  }

  const hubSocket = path.join(record.dir, 'hub.sock');
  const hubHost = plan.hosts[0];
  const hubArgs = [path.join(DIST, 'demo', 'hub.js'), '--store', d.insideStoreSpec, '--socket', hubSocket];
  for (const p of pods) hubArgs.push('--scrape', `http://${p.ip}:${ADMIN_PORT}/metrics`);
  if (!d.canary) hubArgs.push('--no-canary');
  const hub = guard(spawnIn(record.dir, hubHost.netns, 'hub', process.execPath, hubArgs, 'pipe'), 'the hub');

  for (const p of pods.filter((x) => x.plan.role === 'loadgen')) p.app = guard(startApp(d, p), `app ${p.plan.name}`);

  return {
    pods, hub, hubSocket,
    killApp(pod: string) {
      const p = pods.find((x) => x.plan.name === pod);
      if (!p?.app) return;
      killed.add(pod);
      p.app.kill('SIGKILL');
    },
    async stop() {
      stopping = true;
      // As a runtime would: DEL every pod (records out of the store, interception removed) while the agents still serve.
      await Promise.race([Promise.all(pods.map((p) => cniCall(d, p.plan, 'DEL'))), sleep(10_000)]);
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
      await Promise.race([
        Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r))))),
        sleep(3000),
      ]);
    },
  };
}

export { UNDERLAY_PREFIX };
