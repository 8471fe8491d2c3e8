/**
 * `meshwork demo`: a whole virtual cluster with the mesh on this machine,
 * shown live, then removed (demo/demo.ts). Loaded lazily by cli/main.ts.
 */
import type { Command } from 'commander';
import { MeshworkError } from '../lib/errors';
import { parseStoreSpec } from '../store/spec';

function intIn(flag: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new MeshworkError('EUSAGE', `${flag}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return n;
  };
}

export function register(program: Command): void {
  program.command('demo')
    .description('build a virtual cluster (hosts, overlay, DNS, sidecars, a bookstore app) and show the mesh working; Ctrl-C removes it')
    .option('--no-story', 'keep traffic steady: no canary rollout, no failures')
    .option('--hosts <n>', 'hosts (network namespaces) in the cluster', intIn('--hosts', 1, 20), 3)
    .option('--store <spec>', 'cluster store (default: an embedded file store in the run directory; or etcd:http://host:2379)')
    .option('--duration <s>', 'stop and clean up after this many seconds (default: until Ctrl-C)', intIn('--duration', 1, 86_400))
    .option('--down [id]', 'remove demo runs (all, or the one with this id): stop live ones, clean up after crashed ones')
    .option('--port <port>', 'port of the dashboard on 127.0.0.1 (0: any free port)', intIn('--port', 0, 65_535), 0)
    .option('--json-events <file>', 'append one JSON line per event (build steps, canary decisions, story steps, stats) to this file ("-" for stdout)')
    .option('--step-seconds <s>', 'seconds between canary analyses', intIn('--step-seconds', 1, 600), 6)
    .option('--rate <rps>', 'load generator requests per second', intIn('--rate', 1, 1000), 20)
    .action(async (opts: { story: boolean; hosts: number; store?: string; duration?: number; down?: string | boolean; port: number; jsonEvents?: string; stepSeconds: number; rate: number }) => {
      const out = (s: string) => { process.stdout.write(s); };
      const { runDemo, downRuns } = await import('../demo/demo');
      if (opts.down !== undefined) {
        process.exitCode = await downRuns(typeof opts.down === 'string' ? opts.down : undefined, out);
        return;
      }
      // A bad store spec fails here, before anything is made.
      if (opts.store !== undefined && parseStoreSpec(opts.store).kind === 'memory') {
        throw new MeshworkError('EUSAGE', '--store memory: the demo\'s agents, sidecars and controller are separate processes sharing one store; use file:/dir or etcd:http://host:2379');
      }
      if (opts.jsonEvents === '-' && process.stdout.isTTY) throw new MeshworkError('EUSAGE', '--json-events -: stdout is the live view; give a file');
      process.exitCode = await runDemo({
        hosts: opts.hosts, story: opts.story, store: opts.store, duration: opts.duration, port: opts.port,
        jsonEvents: opts.jsonEvents, stepSeconds: opts.stepSeconds, rate: opts.rate,
        live: Boolean(process.stdout.isTTY) && opts.jsonEvents !== '-',
        out,
      });
    });
}
