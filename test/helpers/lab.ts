/**
 * A disposable lab of network namespaces for tests, benches and the demo.
 * Every name carries a unique prefix so parallel runs never collide, and
 * `cleanup()` removes everything the lab made (namespaces, and with them their
 * links, nft tables and sockets; plus processes it started), even after failure.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const isRoot = process.getuid?.() === 0;
export const NEEDS_ROOT = 'needs root: real network namespaces (run the suite as root)';

export interface RunResult { code: number; stdout: string; stderr: string }

/** Runs a command synchronously; throws with its stderr unless `allowFail`. */
export function sh(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; allowFail?: boolean; timeoutMs?: number } = {}): RunResult {
  const r = spawnSync(cmd, args, { input: opts.input, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000 });
  const res = { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
  if (res.code !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${res.code}: ${res.stderr || res.stdout}`);
  }
  return res;
}

/** Runs a command asynchronously and collects output. */
export function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
    child.on('error', (e) => { clearTimeout(timer); resolve({ code: -1, stdout, stderr: stderr + String(e) }); });
    // A child may exit without reading its input: that is its business, not a test crash.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

export class Netns {
  constructor(readonly name: string) {}
  get path(): string { return `/var/run/netns/${this.name}`; }
  /** Synchronous command inside this namespace. */
  sh(cmd: string, args: string[], opts: Parameters<typeof sh>[2] = {}): RunResult {
    return sh('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }
  /** Asynchronous command inside this namespace. */
  run(cmd: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }
  ip(...args: string[]): string { return this.sh('ip', args).stdout; }
}

export class Lab {
  /** Short unique tag: link names must fit in 15 characters. */
  readonly id: string;
  readonly tmp: string;
  private readonly namespaces: Netns[] = [];
  private readonly procs: ChildProcess[] = [];
  private readonly cleanups: Array<() => void | Promise<void>> = [];

  constructor(tag = 'mwt') {
    this.id = `${tag}${crypto.randomBytes(3).toString('hex')}`;
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${this.id}-`));
  }

  /** A link name unique to this lab: `<id><suffix>`, at most 15 characters. */
  link(suffix: string): string {
    const name = `${this.id}${suffix}`;
    if (name.length > 15) throw new Error(`link name ${name} longer than 15`);
    return name;
  }

  netns(suffix: string): Netns {
    const ns = new Netns(`${this.id}-${suffix}`);
    sh('ip', ['netns', 'add', ns.name]);
    this.namespaces.push(ns);
    ns.sh('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A veth pair between two namespaces, addressed and up. */
  veth(a: Netns, aName: string, aAddr: string | undefined, b: Netns, bName: string, bAddr: string | undefined): void {
    const tmpA = this.link(`a${crypto.randomBytes(2).toString('hex')}`);
    const tmpB = this.link(`b${crypto.randomBytes(2).toString('hex')}`);
    sh('ip', ['link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB]);
    sh('ip', ['link', 'set', tmpA, 'netns', a.name, 'name', aName]);
    sh('ip', ['link', 'set', tmpB, 'netns', b.name, 'name', bName]);
    if (aAddr) a.ip('addr', 'add', aAddr, 'dev', aName);
    if (bAddr) b.ip('addr', 'add', bAddr, 'dev', bName);
    a.ip('link', 'set', aName, 'up');
    b.ip('link', 'set', bName, 'up');
  }

  /** Starts a long-running process; it is killed at cleanup. */
  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.procs.push(child);
    return child;
  }

  /** Like spawn, inside a namespace. */
  spawnIn(ns: Netns, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    return this.spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], opts);
  }

  onCleanup(fn: () => void | Promise<void>): void { this.cleanups.push(fn); }

  async cleanup(): Promise<void> {
    for (const fn of this.cleanups.reverse()) {
      try { await fn(); } catch { /* best effort: keep removing the rest */ }
    }
    for (const p of this.procs) {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGKILL');
        await new Promise((r) => { p.once('exit', r); setTimeout(r, 2000); });
      }
    }
    // Processes still running inside our namespaces (e.g. spawned by the plugin) die with them.
    for (const ns of this.namespaces) {
      const pids = sh('ip', ['netns', 'pids', ns.name], { allowFail: true }).stdout.split(/\s+/).filter(Boolean);
      for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
    }
    for (const ns of this.namespaces.reverse()) sh('ip', ['netns', 'del', ns.name], { allowFail: true });
    // Links in the root namespace we may have created and not moved.
    const links = sh('ip', ['-o', 'link', 'show'], { allowFail: true }).stdout;
    for (const m of links.matchAll(/^\d+: ([^:@]+)/gm)) {
      if (m[1].startsWith(this.id)) sh('ip', ['link', 'del', m[1]], { allowFail: true });
    }
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** Polls `fn` until it returns truthy or `timeoutMs` passes (no fixed sleeps in tests). */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const repoRoot = path.resolve(__dirname, '..', '..', '..');
