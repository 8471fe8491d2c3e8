/**
 * `meshwork`: the command line. Each area registers its own subcommands from
 * cli/<area>.ts (export `register(program)`), so this file never grows a
 * branch per feature. Modules are loaded lazily to keep start-up lean.
 */
import { setFlagsFromString } from 'node:v8';
import { Command, CommanderError } from 'commander';
import { MeshworkError } from '../lib/errors';

const AREAS = ['policy', 'agent', 'dns', 'sidecar', 'demo', 'canary', 'install', 'status'];

export async function main(argv: string[]): Promise<number> {
  // The long-running commands (sidecar, agent, dns) allocate per request objects that live
  // about a millisecond. V8 may decide from a burst (a warm-up, a slow upstream) that their
  // allocation sites survive and allocate them in the old generation from then on: full
  // mark-compacts every second and about a fifth less throughput, at random from one run to
  // the next. The young generation serves this pattern best; set before any of it is loaded.
  setFlagsFromString('--no-allocation-site-pretenuring');
  const program = new Command('meshwork')
    .description('meshwork: a virtual network and service mesh for containers')
    .showHelpAfterError()
    .exitOverride();
  for (const area of AREAS) {
    let mod: { register?: (p: Command) => void } | undefined;
    try {
      mod = require(`./${area}`);
    } catch (err: any) {
      if (err?.code === 'MODULE_NOT_FOUND' && String(err.message).includes(`/${area}`)) continue;
      throw err;
    }
    mod?.register?.(program);
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // The edge: a user sees a message, never a stack trace (MESHWORK_DEBUG=1 shows it).
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`meshwork: ${msg}\n`);
    if (process.env.MESHWORK_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return err instanceof MeshworkError ? 1 : 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
