/**
 * What the bridge driver remembers between calls, per network, on disk:
 * one small JSON record per attachment, written before any kernel change so
 * GC can find what a killed plugin left. The nft table is regenerated from
 * these records, and they change only under the network's lock.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { withLock } from '../lock';
import type { PortMapping } from '../types';

export interface AttachmentRecord {
  containerId: string;
  ifname: string;
  hostVeth: string;
  netns?: string;
  /** CIDRs given to the container (empty until IPAM answered). */
  addresses: string[];
  portMappings: PortMapping[];
}

/** Stable short key of an attachment: names its record and its host-side veth. */
export function attachmentKey(containerId: string, ifname: string): string {
  return createHash('sha256').update(`${containerId}\0${ifname}`).digest('hex').slice(0, 16);
}

/** Host-side veth name: `mw` + 12 hex digits (fits IFNAMSIZ, recognisable by GC). */
export const hostVethName = (containerId: string, ifname: string): string => `mw${attachmentKey(containerId, ifname).slice(0, 12)}`;
export const HOST_VETH_RE = /^mw[0-9a-f]{12}$/;

/** This namespace in this boot. */
function whereAmI(): string {
  const st = fs.statSync('/proc/thread-self/ns/net');
  let boot = '';
  try { boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { /* no procfs entry: namespace only */ }
  return `${boot}/${st.dev}:${st.ino}`;
}

function writeAtomic(file: string, data: unknown): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(data), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // A torn or foreign file: treat as absent rather than wedge every later call.
    if (e instanceof SyntaxError) return undefined;
    throw e;
  }
}

export class NetworkState {
  readonly dir: string;
  constructor(stateDir: string, readonly network: string) {
    this.dir = path.join(stateDir, network);
  }

  /** The network's lock: `<stateDir>/<network>.lock`, beside (not inside) the records. */
  lock<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(path.dirname(this.dir), this.network, fn);
  }

  private file(key: string): string { return path.join(this.dir, `att-${key}.json`); }

  write(rec: AttachmentRecord): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeAtomic(this.file(attachmentKey(rec.containerId, rec.ifname)), rec);
  }

  read(containerId: string, ifname: string): AttachmentRecord | undefined {
    return readJson<AttachmentRecord>(this.file(attachmentKey(containerId, ifname)));
  }

  remove(containerId: string, ifname: string): boolean {
    try { fs.unlinkSync(this.file(attachmentKey(containerId, ifname))); return true; } catch { return false; }
  }

  all(): AttachmentRecord[] {
    let names: string[];
    try { names = fs.readdirSync(this.dir); } catch { return []; }
    return names
      .filter((n) => /^att-[0-9a-f]{16}\.json$/.test(n))
      .map((n) => readJson<AttachmentRecord>(path.join(this.dir, n)))
      .filter((r): r is AttachmentRecord => !!r);
  }

  /**
   * The nft script last applied for this network, so an ADD that does not
   * change the rules (no new subnet, no published port) skips spawning nft.
   * Tied to the namespace and the boot: another namespace or a reboot never
   * trusts it.
   */
  appliedRules(): string | undefined {
    const r = readJson<{ where: string; script: string }>(path.join(this.dir, 'rules.json'));
    return r && r.where === whereAmI() ? r.script : undefined;
  }

  setAppliedRules(script: string | undefined): void {
    const file = path.join(this.dir, 'rules.json');
    if (script === undefined) { try { fs.unlinkSync(file); } catch { /* absent */ } return; }
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeAtomic(file, { where: whereAmI(), script });
  }

  /** Half-written files of a writer that was killed. Caller holds the lock (every write happens under it). */
  removeTorn(): void {
    let names: string[];
    try { names = fs.readdirSync(this.dir); } catch { return; }
    for (const n of names) if (n.endsWith('.tmp')) { try { fs.unlinkSync(path.join(this.dir, n)); } catch { /* gone */ } }
  }

  /** Removes the network's empty directory once its last attachment went. */
  clearNetwork(): void {
    this.setAppliedRules(undefined);
    this.removeTorn();
    try { fs.rmdirSync(this.dir); } catch { /* absent, or a record was written meanwhile */ }
  }
}
