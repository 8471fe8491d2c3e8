/**
 * Drives plugins through libcni's real `cnitool` (built by
 * scripts/build-cnitool.sh), inside a host namespace the test made, with
 * NETCONFPATH and CNI_PATH pointing at per-test directories. cnitool derives
 * the container ID from the netns path and caches results in
 * /var/lib/cni/results/<network>-<containerID>-<ifname>; `cleanup()` removes
 * the cache entries of the networks written here.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Lab, type Netns, type RunResult, repoRoot, run, sh } from './lab';

export const CNI_CACHE_RESULTS = '/var/lib/cni/results';
export const REFERENCE_PLUGINS = '/usr/lib/cni';
export const SHIM_PATH = path.join(repoRoot, 'build', 'Release', 'meshwork-cni-shim');

let built: string | undefined;
/** Path of the cnitool binary, building it on first use (cached under .cache/cnitool). */
export function cnitoolBinary(): string {
  if (!built) {
    const r = sh('bash', [path.join(repoRoot, 'scripts', 'build-cnitool.sh')], { timeoutMs: 600_000 });
    built = r.stdout.trim().split('\n').pop()!;
  }
  return built;
}

/** The container ID cnitool gives a netns path (sha512 of the absolute path, first 10 bytes). */
export function cnitoolContainerId(netnsPath: string): string {
  return `cnitool-${crypto.createHash('sha512').update(path.resolve(netnsPath)).digest('hex').slice(0, 20)}`;
}

export interface CnitoolCall {
  ifname?: string;
  /** CAP_ARGS: capability arguments, e.g. { portMappings: [...] } or { ips: [...] }. */
  capArgs?: Record<string, unknown>;
  /** CNI_ARGS pairs. */
  cniArgs?: Record<string, string>;
  env?: Record<string, string>;
}

export interface CnitoolResult extends RunResult { json?: any }

export class Cnitool {
  readonly netconfDir: string;
  readonly binDir: string;
  private readonly networks = new Set<string>();

  /**
   * `cniPath` directories are searched after the per-test bin dir (where
   * `linkPlugin` puts executables such as meshwork-cni).
   */
  constructor(readonly lab: Lab, readonly host: Netns, readonly cniPath: string[] = [REFERENCE_PLUGINS]) {
    const base = fs.mkdtempSync(path.join(lab.tmp, 'cni-'));
    this.netconfDir = path.join(base, 'net.d');
    this.binDir = path.join(base, 'bin');
    fs.mkdirSync(this.netconfDir);
    fs.mkdirSync(this.binDir);
    lab.onCleanup(() => this.cleanup());
  }

  /** Makes `target` callable as plugin `name` on this CNI_PATH. */
  linkPlugin(name: string, target: string): void {
    fs.symlinkSync(target, path.join(this.binDir, name));
  }

  /** Writes a conflist (`plugins` given) or a single plugin config as <name>.conflist / .conf. */
  writeConfig(conf: Record<string, unknown> & { name: string }): string {
    this.networks.add(conf.name);
    const file = path.join(this.netconfDir, `${conf.name}.${Array.isArray(conf.plugins) ? 'conflist' : 'conf'}`);
    fs.writeFileSync(file, JSON.stringify(conf, null, 2));
    return file;
  }

  env(call: CnitoolCall = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      NETCONFPATH: this.netconfDir,
      CNI_PATH: [this.binDir, ...this.cniPath].join(':'),
      CNI_IFNAME: call.ifname ?? 'eth0',
      ...call.env,
    };
    if (call.capArgs) env.CAP_ARGS = JSON.stringify(call.capArgs);
    if (call.cniArgs) env.CNI_ARGS = Object.entries(call.cniArgs).map(([k, v]) => `${k}=${v}`).join(';');
    return env;
  }

  /** argv that runs cnitool in the host namespace. */
  argv(verb: 'add' | 'check' | 'del', network: string, pod: Netns): string[] {
    return ['ip', 'netns', 'exec', this.host.name, cnitoolBinary(), verb, network, pod.path];
  }

  async call(verb: 'add' | 'check' | 'del', network: string, pod: Netns, opts: CnitoolCall = {}): Promise<CnitoolResult> {
    const [cmd, ...args] = this.argv(verb, network, pod);
    const r: CnitoolResult = await run(cmd, args, { env: this.env(opts), timeoutMs: 120_000 });
    if (r.stdout.trim()) {
      try { r.json = JSON.parse(r.stdout); } catch { /* not JSON: left for the caller to show */ }
    }
    return r;
  }

  /** Like `call` but throws with cnitool's output unless it succeeded. */
  async ok(verb: 'add' | 'check' | 'del', network: string, pod: Netns, opts: CnitoolCall = {}): Promise<CnitoolResult> {
    const r = await this.call(verb, network, pod, opts);
    if (r.code !== 0) throw new Error(`cnitool ${verb} ${network} ${pod.name} exited ${r.code}: ${r.stderr.trim()} ${r.stdout.trim()}`);
    return r;
  }

  add(network: string, pod: Netns, opts?: CnitoolCall) { return this.ok('add', network, pod, opts); }
  check(network: string, pod: Netns, opts?: CnitoolCall) { return this.ok('check', network, pod, opts); }
  del(network: string, pod: Netns, opts?: CnitoolCall) { return this.ok('del', network, pod, opts); }

  /** Result cache files cnitool left for our networks. */
  cachedResults(): string[] {
    let names: string[] = [];
    try { names = fs.readdirSync(CNI_CACHE_RESULTS); } catch { return []; }
    return names.filter((n) => [...this.networks].some((net) => n.startsWith(`${net}-`)));
  }

  cleanup(): void {
    for (const f of this.cachedResults()) fs.rmSync(path.join(CNI_CACHE_RESULTS, f), { force: true });
  }
}
