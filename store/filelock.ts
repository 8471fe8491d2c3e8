/**
 * A cross-process lock for the file store: a lock file created with O_EXCL
 * holding its owner's identity (pid, process start time, pid namespace).
 * A holder that died (SIGKILL mid-write) is detected at once by checking its
 * pid and start time in /proc, so waiters do not sit out a timeout; a holder
 * in another pid namespace can't be checked and is presumed dead only once its
 * lock is older than `staleMs` (critical sections last milliseconds).
 * Breaking a stale lock happens under a second, short-lived lock, so two
 * waiters can never both break it and one of them remove the other's fresh lock.
 * Every operation here is synchronous: the caller's critical section is too,
 * so nothing else in this process runs while the lock is held.
 */
import * as fs from 'node:fs';

interface Identity { pid: number; start: string; pidns: string }

function readIdentity(pid: number | 'self'): Identity | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) counted after the last ')' that closes the command name.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = fields[19];
    let pidns = '';
    try { pidns = fs.readlinkSync(`/proc/${pid}/ns/pid`); } catch { /* no access: unknown */ }
    return { pid: pid === 'self' ? process.pid : pid, start, pidns };
  } catch {
    return undefined;
  }
}

export interface FileLockOptions {
  /** Age after which a lock whose holder cannot be checked is presumed abandoned. */
  staleMs?: number;
}

export class FileLock {
  private readonly breakPath: string;
  private readonly staleMs: number;
  private self: Identity | undefined;
  /** Set when this process broke a dead holder's lock: the caller may clean up after it. */
  brokeStale = false;

  constructor(readonly path: string, opts: FileLockOptions = {}) {
    this.breakPath = `${path}.break`;
    this.staleMs = opts.staleMs ?? 10_000;
  }

  private identity(): Identity {
    // Re-read after fork-like situations is unnecessary in Node; cache once.
    if (!this.self) this.self = readIdentity('self') ?? { pid: process.pid, start: '0', pidns: '' };
    return this.self;
  }

  /** Takes the lock if free (or held by a dead process); false if a live process holds it. */
  tryAcquire(): boolean {
    const me = this.identity();
    const content = `${me.pid} ${me.start} ${me.pidns} ${Date.now()}\n`;
    for (let attempt = 0; attempt < 2; attempt++) {
      let fd: number;
      try {
        fd = fs.openSync(this.path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
      } catch (err: any) {
        if (err?.code !== 'EEXIST') throw err;
        if (!this.breakIfStale()) return false;
        continue;
      }
      try { fs.writeSync(fd, content); } finally { fs.closeSync(fd); }
      return true;
    }
    return false;
  }

  release(): void {
    try { fs.unlinkSync(this.path); } catch (err: any) { if (err?.code !== 'ENOENT') throw err; }
  }

  /** Describes the current holder, for error messages. */
  holder(): string {
    try { return fs.readFileSync(this.path, 'utf8').trim().split(' ')[0] || 'unknown'; } catch { return 'none'; }
  }

  /** Removes the lock if its holder is dead; true if the lock is (now) free. */
  private breakIfStale(): boolean {
    const seen = this.readLock();
    if (seen === undefined) return true; // released meanwhile
    if (!this.isStale(seen)) return false;
    let bfd: number;
    try {
      bfd = fs.openSync(this.breakPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
    } catch (err: any) {
      if (err?.code !== 'EEXIST') throw err;
      // Someone is breaking it right now; a breaker that died leaves this behind, so age it out.
      try {
        if (Date.now() - fs.statSync(this.breakPath).mtimeMs > 2000) fs.unlinkSync(this.breakPath);
      } catch { /* gone already */ }
      return false;
    }
    fs.closeSync(bfd);
    try {
      // Only the exact lock we judged stale may go; a fresh lock taken since stays.
      if (this.readLock() === seen) {
        fs.unlinkSync(this.path);
        this.brokeStale = true;
      }
    } finally {
      try { fs.unlinkSync(this.breakPath); } catch { /* ignore */ }
    }
    return true;
  }

  private readLock(): string | undefined {
    try { return fs.readFileSync(this.path, 'utf8'); } catch (err: any) {
      if (err?.code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private isStale(content: string): boolean {
    const [pidText, start, pidns, takenText] = content.trim().split(' ');
    const pid = Number(pidText);
    const taken = Number(takenText);
    const age = Date.now() - (Number.isFinite(taken) ? taken : 0);
    // Created but not yet written (holder died between open and write), or garbage.
    if (!Number.isInteger(pid) || pid <= 0 || start === undefined) return this.fileAge() > 1000;
    const me = this.identity();
    if (pidns && me.pidns && pidns !== me.pidns) return age > this.staleMs;
    const other = readIdentity(pid);
    if (!other) return true; // no such process
    return other.start !== start; // pid reused by another process
  }

  private fileAge(): number {
    try { return Date.now() - fs.statSync(this.path).mtimeMs; } catch { return 0; }
  }
}
