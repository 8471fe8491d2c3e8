/** Runs `nft` with a generated script on stdin (one atomic transaction), optionally inside a namespace. */
import { spawn, type ChildProcess } from 'node:child_process';
import { MeshworkError } from '../../lib/errors';
import { inNetnsSync } from '../../lib/netns';
import { nftBinary } from './binary';

export class NftError extends MeshworkError {
  constructor(message: string, readonly script?: string, options?: { cause?: unknown }) {
    super('ENFT', message, options);
  }
}

export interface NftOptions { netns?: string; nftPath?: string; timeoutMs?: number }

function runNft(args: string[], input: string, o: NftOptions): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const start = (): ChildProcess => spawn(o.nftPath ?? nftBinary(), args, { stdio: ['pipe', 'pipe', 'pipe'] });
    // spawn forks synchronously, so the child is born in the namespace we switch to.
    let child: ChildProcess;
    try {
      child = o.netns ? inNetnsSync(o.netns, start) : start();
    } catch (err) {
      reject(err);
      return;
    }
    let stdout = '', stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 30_000);
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', (err) => { clearTimeout(timer); reject(new NftError(`cannot run nft: ${err.message}`, undefined, { cause: err })); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
    // nft may exit before reading stdin (e.g. a parse error): an EPIPE here is
    // not a failure of ours; the exit code and stderr tell what happened.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input);
  });
}

/** Applies `script` atomically (`nft -f -`): all of it or none. */
export async function nftApply(script: string, o: NftOptions = {}): Promise<void> {
  const r = await runNft(['-f', '-'], script, o);
  if (r.code !== 0) throw new NftError(`nft rejected the ruleset: ${r.stderr.trim().split('\n').slice(0, 3).join(' / ')}`, script);
}

/** Whether table `inet <name>` exists. */
export async function nftTableExists(name: string, o: NftOptions = {}): Promise<boolean> {
  const r = await runNft(['list', 'table', 'inet', name], '', o);
  return r.code === 0;
}

/** `nft list table inet <name>` text, or undefined when absent. */
export async function nftListTable(name: string, o: NftOptions = {}): Promise<string | undefined> {
  const r = await runNft(['list', 'table', 'inet', name], '', o);
  return r.code === 0 ? r.stdout : undefined;
}
