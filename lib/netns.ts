/**
 * The one doorway into another network namespace. setns(2) switches only the
 * calling thread, so we switch Node's main thread, run a *synchronous* step
 * (open a socket, spawn a process) and switch straight back before any other
 * callback can run. Sockets keep the namespace they were created in, so a
 * netlink socket opened here keeps working on the pod's namespace afterwards.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshworkError } from './errors';

interface Native {
  setns(fd: number, nstype?: number): void;
  originalDst(fd: number): { address: string; port: number; family: 4 | 6 };
  CLONE_NEWNET: number;
}

let native: Native | undefined;
export function loadNative(): Native {
  if (!native) {
    const candidates = [
      path.join(__dirname, '..', '..', 'build', 'Release', 'meshwork_native.node'),
      path.join(__dirname, '..', 'build', 'Release', 'meshwork_native.node'),
    ];
    const found = candidates.find((p) => fs.existsSync(p));
    if (!found) throw new MeshworkError('ENATIVE', 'native addon missing: run `npm run build` (node-gyp rebuild)');
    native = require(found) as Native;
  }
  return native;
}

export class NetnsNotFoundError extends MeshworkError {
  constructor(nsPath: string, cause?: unknown) {
    super('ENETNS', `network namespace ${nsPath} does not exist`, { cause });
  }
}

/** Opens a namespace file, mapping ENOENT/ENOTDIR to a typed error. */
export function openNetns(nsPath: string): number {
  try {
    return fs.openSync(nsPath, 'r');
  } catch (err: any) {
    if (err?.code === 'ENOENT' || err?.code === 'ENOTDIR') throw new NetnsNotFoundError(nsPath, err);
    throw err;
  }
}

/** Runs `fn` synchronously with the main thread inside `nsPath`, then returns. */
export function inNetnsSync<T>(nsPath: string, fn: () => T): T {
  const n = loadNative();
  const target = openNetns(nsPath);
  const home = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    try {
      n.setns(target, n.CLONE_NEWNET);
    } catch (err: any) {
      throw new MeshworkError('ENETNS', `${nsPath} is not a network namespace (${err.message})`, { cause: err });
    }
    try {
      return fn();
    } finally {
      n.setns(home, n.CLONE_NEWNET);
    }
  } finally {
    fs.closeSync(target);
    fs.closeSync(home);
  }
}

/** Inode identity of a namespace file, for "is this the same namespace" checks. */
export function netnsId(nsPath: string): string {
  const st = fs.statSync(nsPath);
  return `${st.dev}:${st.ino}`;
}
