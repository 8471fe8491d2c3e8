/**
 * Running `meshwork demo` as a user would (a child process), reading its
 * --json-events file, and listing what a run could leave on the machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, sh } from '../helpers/lab';

export interface DemoEvent { type: string; at: string; step?: string; [k: string]: any }

export interface DemoProcess {
  child: ChildProcess;
  eventsFile: string;
  output(): string;
  events(): DemoEvent[];
  /** Waits for the first event matching `pred`. */
  waitFor(pred: (e: DemoEvent) => boolean, timeoutMs: number, what: string): Promise<DemoEvent>;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startDemo(dir: string, name: string, args: string[]): DemoProcess {
  const eventsFile = path.join(dir, `${name}.jsonl`);
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin', 'meshwork'), 'demo', '--json-events', eventsFile, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const events = (): DemoEvent[] => {
    let text = '';
    try { text = fs.readFileSync(eventsFile, 'utf8'); } catch { return []; }
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as DemoEvent);
  };
  return {
    child, eventsFile, events,
    output: () => out,
    async waitFor(pred, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const exitedAlready = child.exitCode !== null || child.signalCode !== null;
        const e = events().find(pred);
        if (e) return e;
        // A demo that is gone will never send it: fail now, with what it said.
        if (exitedAlready) throw new Error(`demo exited before ${what}:\n${out.slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; demo output so far:\n${out.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    exited: () => exit,
  };
}

export interface MachineState {
  namespaces: string[];
  rootLinks: string[];
  nftTables: string[];
  etcNetns: string[];
  runDirs: string[];
  /** Command lines of processes mentioning a demo run id. */
  processes: string[];
}

const RUNS = '/run/meshwork-demo';

export function machineState(): MachineState {
  const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean);
  const ls = (d: string) => { try { return fs.readdirSync(d); } catch { return []; } };
  return {
    namespaces: lines(sh('ip', ['netns', 'list']).stdout).map((l) => l.split(' ')[0]),
    rootLinks: [...sh('ip', ['-o', 'link', 'show']).stdout.matchAll(/^\d+: ([^:@]+)/gm)].map((m) => m[1]),
    nftTables: lines(sh('nft', ['list', 'tables']).stdout),
    etcNetns: ls('/etc/netns'),
    runDirs: ls(RUNS),
    processes: lines(sh('ps', ['-eo', 'args']).stdout).filter((l) => /mwd[0-9a-f]{6}/.test(l)),
  };
}

/** Everything of run `id` still on the machine, by kind (empty lists: nothing left). */
export function leftovers(id: string, s: MachineState = machineState()): Record<string, string[]> {
  const mine = (x: string) => x.includes(id);
  return {
    namespaces: s.namespaces.filter(mine),
    rootLinks: s.rootLinks.filter(mine),
    nftTables: s.nftTables.filter(mine),
    etcNetns: s.etcNetns.filter(mine),
    runDirs: s.runDirs.filter(mine),
    processes: s.processes.filter(mine),
  };
}

export const nothing = { namespaces: [], rootLinks: [], nftTables: [], etcNetns: [], runDirs: [], processes: [] };

/** What appeared in the machine's own namespace between two listings (links, nft tables). */
export function rootChanges(before: MachineState, after: MachineState): { links: string[]; tables: string[] } {
  return {
    // Names the demo would use if it leaked into the root namespace (other suites' labs use other prefixes).
    links: after.rootLinks.filter((l) => !before.rootLinks.includes(l) && /^(mwd|mw\.|br0$|eth0$|h\d+$)/.test(l)),
    tables: after.nftTables.filter((t) => !before.nftTables.includes(t) && /meshwork-overlay|meshwork_sidecar/.test(t)),
  };
}
