/**
 * File-backed reservation store: `<dataDir>/<network>/state.json`.
 * Exclusion is two-level: a per-process mutex (the daemon serves concurrent
 * requests in one process) and a cross-process lock file (./lock.ts) for
 * one-shot plugin processes; a lock left by a killed process is taken over at
 * once. Writes go to a temp file, are fsynced and renamed over the old
 * document, so a crash leaves either the old or the new document, never half
 * of one. The directory is not fsynced: that would double the cost of every
 * ADD, and losing the very last rename in a power cut only forgets an
 * allocation whose container died in the same cut.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IpamBusyError, IpamStoreError } from './errors';
import { LockTimeoutError, acquireLock } from './lock';
import { type IpamState, type ReservationStore, KeyedMutex, decodeState, emptyState } from './store';

export interface FileStoreOptions {
  dataDir: string;
  /** The in-process lock table; share one per process so every store on a dir excludes the others. */
  mutex?: KeyedMutex;
  /** Age after which a lock whose owner cannot be checked is considered abandoned. */
  staleMs?: number;
  /** How long to wait for the lock before answering "try again later". */
  lockTimeoutMs?: number;
}

let tmpSeq = 0;

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}-${++tmpSeq}`;
  try {
    const fd = fs.openSync(tmp, 'wx', 0o600);
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export function createFileStore(opts: FileStoreOptions): ReservationStore {
  const mutex = opts.mutex ?? new KeyedMutex();
  const lockOpts = { staleMs: opts.staleMs ?? 30_000, timeoutMs: opts.lockTimeoutMs ?? 15_000 };

  const netDir = (network: string): string => path.join(opts.dataDir, network);
  const stateFile = (network: string): string => path.join(netDir(network), 'state.json');

  function readState(network: string): IpamState {
    const file = stateFile(network);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw new IpamStoreError(`reading ${file}`, err);
    }
    const state = decodeState(text);
    if (!state) throw new IpamStoreError(`reading ${file}`, new Error('not a meshwork IPAM state document (corrupt?)'));
    return state;
  }

  async function withLock<T>(network: string, fn: () => T): Promise<T> {
    const dir = netDir(network);
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new IpamStoreError(`creating ${dir}`, err);
    }
    return mutex.run(dir, async () => {
      let release: () => void;
      try {
        release = await acquireLock(path.join(dir, 'lock'), lockOpts);
      } catch (err) {
        if (err instanceof LockTimeoutError) throw new IpamBusyError(`network ${network} (${err.message})`, err);
        throw new IpamStoreError(`locking ${dir}`, err);
      }
      try {
        return fn();
      } finally {
        release();
      }
    });
  }

  return {
    update: (network, fn) => withLock(network, () => {
      const out = fn(readState(network));
      if (out.state) {
        try {
          writeAtomic(stateFile(network), `${JSON.stringify(out.state, null, 1)}\n`);
        } catch (err) {
          throw new IpamStoreError(`writing ${stateFile(network)}`, err);
        }
      }
      return out.value;
    }),
    read: async (network) => readState(network),
  };
}
