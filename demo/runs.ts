/**
 * The registry of demo runs: one directory per run under /run/meshwork-demo/
 * holding `run.json` (owner pid and its start time, every namespace and
 * /etc/netns entry the run may create). The record is written *before* the
 * first namespace exists, so a run killed at any point can be found and
 * removed later by `meshwork demo --down` or by the next demo's start-up.
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshworkError } from '../lib/errors';

export const RUNS_DIR = process.env.MESHWORK_DEMO_RUNS ?? '/run/meshwork-demo';

export interface RunRecord {
  id: string;
  pid: number;
  /** /proc/<pid>/stat start time, so a recycled pid is not taken for the owner. */
  pidStart: string;
  startedAt: string;
  dir: string;
  namespaces: string[];
  /** /etc/netns/<ns> directories this run wrote (resolv.conf per pod). */
  etcNetns: string[];
  /** A store outside the run directory (etcd): what the run wrote there is deleted on teardown. */
  sharedStore?: { spec: string; namespace: string; network: string };
}

export class DemoRunError extends MeshworkError {
  constructor(message: string, options?: { cause?: unknown }) { super('EDEMO', message, options); }
}

/** A short id: namespace and link names derived from it stay under 15 characters. */
export function newRunId(): string {
  return `mwd${crypto.randomBytes(3).toString('hex')}`;
}

export function processStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime), counted after the ")" closing the command name.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function ownerAlive(r: RunRecord): boolean {
  return processStart(r.pid) === r.pidStart;
}

export function runDir(id: string): string { return path.join(RUNS_DIR, id); }

export function writeRecord(r: RunRecord): void {
  fs.mkdirSync(r.dir, { recursive: true, mode: 0o755 });
  const tmp = path.join(r.dir, `run.json.${process.pid}`);
  fs.writeFileSync(tmp, JSON.stringify(r, null, 2));
  fs.renameSync(tmp, path.join(r.dir, 'run.json'));
}

export function readRecord(id: string): RunRecord | undefined {
  try {
    const r = JSON.parse(fs.readFileSync(path.join(runDir(id), 'run.json'), 'utf8')) as RunRecord;
    return r && typeof r.id === 'string' && Array.isArray(r.namespaces) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** Every run in the registry; a directory without a readable record is listed by id only. */
export function listRuns(): Array<{ id: string; record?: RunRecord }> {
  let names: string[] = [];
  try { names = fs.readdirSync(RUNS_DIR); } catch { return []; }
  return names.filter((n) => /^mwd[0-9a-f]{6}$/.test(n)).map((id) => ({ id, record: readRecord(id) }));
}

function ipNetns(args: string[]): { code: number; out: string } {
  const r = spawnSync('ip', ['netns', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status ?? -1, out: r.stdout ?? '' };
}

/** Namespaces of the machine whose name starts with the run id (also those a crash left unrecorded). */
function namespacesOf(id: string): string[] {
  return ipNetns(['list']).out.split('\n').map((l) => l.split(' ')[0]).filter((n) => n === id || n.startsWith(`${id}-`));
}

/**
 * Removes everything a run made: every process inside its namespaces (agents,
 * sidecars, apps, the hub), the namespaces (their links and nft tables go with
 * them), its /etc/netns entries and its directory. Safe to repeat.
 */
export async function teardownRun(id: string, record?: RunRecord): Promise<string[]> {
  const problems: string[] = [];
  if (record?.sharedStore) {
    try { await cleanSharedStore(id, record.sharedStore); } catch (err: any) { problems.push(`store ${record.sharedStore.spec}: ${err?.message ?? err}`); }
  }
  const nss = [...new Set([...(record?.namespaces ?? []), ...namespacesOf(id)])];
  // Kill until no process is left: a dying parent must not leave a child behind.
  for (let round = 0; round < 20; round++) {
    let found = 0;
    for (const ns of nss) {
      for (const pid of ipNetns(['pids', ns]).out.split(/\s+/).filter(Boolean)) {
        found++;
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
      }
    }
    if (found === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const ns of nss) {
    if (!fs.existsSync(`/var/run/netns/${ns}`)) continue;
    const r = ipNetns(['del', ns]);
    if (r.code !== 0) problems.push(`namespace ${ns} could not be removed`);
  }
  const etc = new Set([...(record?.etcNetns ?? []), ...nss.map((n) => `/etc/netns/${n}`)]);
  for (const d of etc) {
    if (!d.startsWith('/etc/netns/') || !path.basename(d).startsWith(id)) continue;
    fs.rmSync(d, { recursive: true, force: true });
  }
  fs.rmSync(runDir(id), { recursive: true, force: true });
  return problems;
}

/**
 * Deletes what the run wrote to a shared store: everything of its own
 * namespace and network (the plan gives a shared-store run both, named after
 * the run id), and its nodes. Nothing of anyone else is touched.
 */
async function cleanSharedStore(id: string, s: NonNullable<RunRecord['sharedStore']>): Promise<void> {
  if (s.namespace !== id || s.network !== id) return;
  const { openStore } = await import('../store/open');
  const { keys, ROOT } = await import('../store/keys');
  const store = await openStore(s.spec);
  try {
    const doomed: string[] = [];
    const under = async (prefix: string, pick: (key: string, value: string) => boolean = () => true) => {
      for (const kv of (await store.list(prefix)).items) if (pick(kv.key, kv.value)) doomed.push(kv.key);
    };
    await under(keys.policies(), (k) => k.split('/')[4] === id);
    await under(keys.clusterIps(), (_k, v) => v.replace(/^"|"$/g, '').startsWith(`${id}/`));
    await under(`${ROOT}canary/${id}/`);
    await under(keys.endpoints(id));
    await under(keys.subnets(id));
    await under(keys.nodes(), (k) => k.slice(keys.nodes().length).startsWith(`${id}-`));
    for (const k of doomed) await store.delete(k);
  } finally {
    await store.close();
  }
}

function dirAgeBase(id: string): number {
  try { return fs.statSync(runDir(id)).mtimeMs; } catch { return 0; }
}

/** Removes every run whose owner is gone (a crashed or SIGKILLed demo). */
export async function reapDeadRuns(): Promise<string[]> {
  const reaped: string[] = [];
  for (const { id, record } of listRuns()) {
    if (record && ownerAlive(record)) continue;
    // A directory without a record yet may be a run starting right now.
    if (!record && Date.now() - dirAgeBase(id) < 60_000) continue;
    await teardownRun(id, record);
    reaped.push(id);
  }
  return reaped;
}
