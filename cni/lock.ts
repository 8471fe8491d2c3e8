/**
 * A per-key lock that works across plugin processes (an O_EXCL lock file
 * holding the owner's pid; a dead owner's file is broken) and inside one
 * process (the daemon runs many calls at once: a promise chain per key).
 * Short polling keeps 50 concurrent ADDs moving; a bounded wait ends in
 * CNI code 11 (try again later) rather than a hang.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CniCode, CniError } from './types';

const inProcess = new Map<string, Promise<void>>();
/** A lock file still without a pid after this long belongs to a writer that died. */
const EMPTY_LOCK_STALE_MS = 2000;

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

function tryTake(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'wx', 0o600);
    fs.writeSync(fd, String(process.pid));
    fs.closeSync(fd);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  // Break the lock of an owner that died (killed plugin): its pid is gone, or
  // it died between creating the file and writing its pid (empty for long).
  let owner = NaN;
  let ageMs = 0;
  try {
    const text = fs.readFileSync(file, 'utf8');
    owner = text.trim() === '' ? NaN : Number(text);
    ageMs = Date.now() - fs.statSync(file).mtimeMs;
  } catch { return false; }
  const dead = Number.isInteger(owner) && owner > 0 ? owner !== process.pid && !pidAlive(owner) : ageMs > EMPTY_LOCK_STALE_MS;
  if (dead) {
    try { fs.unlinkSync(file); } catch { /* someone else broke it */ }
  }
  return false;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` holding the lock `<dir>/<name>.lock`. */
export async function withLock<T>(dir: string, name: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const file = path.join(dir, `${name}.lock`);
  const prev = inProcess.get(file) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const chain = prev.then(() => mine);
  inProcess.set(file, chain);
  try {
    await prev;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const deadline = Date.now() + timeoutMs;
    let wait = 1;
    while (!tryTake(file)) {
      if (Date.now() > deadline) throw new CniError(CniCode.tryAgainLater, `lock ${file} is held by another plugin call; try again later`);
      await sleep(wait);
      wait = Math.min(wait * 2, 20);
    }
    try {
      return await fn();
    } finally {
      try { fs.unlinkSync(file); } catch { /* already gone */ }
    }
  } finally {
    release();
    if (inProcess.get(file) === chain) inProcess.delete(file);
  }
}
