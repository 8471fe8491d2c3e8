/**
 * A cross-process lock file for the IPAM store, small enough to load on the
 * standalone plugin's start-up path. The lock is created complete and
 * atomically (a temp file holding our pid, hard-linked to the lock name:
 * link(2) fails if the lock exists). A holder that died (its pid is gone, or
 * the lock is older than `staleMs`, e.g. a pid from another pid namespace) is
 * broken at once rather than waited out: the stale file is renamed away
 * (atomic; one breaker wins) and, should the renamed file turn out to be a
 * fresh lock taken in between, it is linked straight back, inode and all.
 */
import * as fs from 'node:fs';

export interface LockOptions {
  /** Age after which a lock whose owner cannot be checked is considered abandoned. */
  staleMs: number;
  /** How long to wait before giving up with LockTimeoutError. */
  timeoutMs: number;
}

export class LockTimeoutError extends Error {
  constructor(readonly lockPath: string, readonly owner: string) {
    super(`lock ${lockPath} still held by ${owner || 'an unknown process'}`);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let seq = 0;
/** Unique per process (pid) and per call (counter): no crypto on the start-up path. */
const tag = (): string => `${process.pid}-${++seq}`;

/** One attempt; returns the lock's inode on success. */
function tryCreate(lockPath: string): number | undefined {
  const tmp = `${lockPath}.new-${tag()}`;
  fs.writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600 });
  try {
    fs.linkSync(tmp, lockPath);
    return fs.statSync(lockPath).ino;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Breaks the lock if its holder is gone; returns the holder's description otherwise. */
function breakIfStale(lockPath: string, staleMs: number): string {
  let st: fs.Stats;
  let owner: string;
  try {
    st = fs.statSync(lockPath);
    owner = fs.readFileSync(lockPath, 'utf8').trim();
  } catch {
    return ''; // released meanwhile: just retry
  }
  const pid = Number(owner);
  const dead = Number.isInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid);
  const old = Date.now() - st.mtimeMs > staleMs;
  if (!dead && !old) return `pid ${owner}`;
  const aside = `${lockPath}.broken-${tag()}`;
  try {
    fs.renameSync(lockPath, aside);
  } catch {
    return ''; // another process broke or released it first
  }
  if (fs.statSync(aside).ino !== st.ino) {
    // We moved a lock taken after our check: give it back untouched.
    try { fs.linkSync(aside, lockPath); } catch { /* a third process holds it now; ours is gone either way */ }
  }
  fs.rmSync(aside, { force: true });
  return '';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Takes the lock, waiting up to `timeoutMs`; resolves to its release function. */
export async function acquireLock(lockPath: string, opts: LockOptions): Promise<() => void> {
  const deadline = Date.now() + opts.timeoutMs;
  let delay = 1;
  for (;;) {
    const ino = tryCreate(lockPath);
    if (ino !== undefined) {
      return () => {
        // Remove it only if it is still ours (not broken and re-taken as stale).
        try { if (fs.statSync(lockPath).ino === ino) fs.unlinkSync(lockPath); } catch { /* already gone */ }
      };
    }
    const owner = breakIfStale(lockPath, opts.staleMs);
    if (!owner) continue;
    if (Date.now() > deadline) throw new LockTimeoutError(lockPath, owner);
    // Short, jittered polls: 50 concurrent plugins each hold the lock for a few ms.
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 16);
  }
}
