/**
 * The driver contract: one module per network kind (bridge.ts, overlay.ts,
 * macvlan.ts) exporting `driver: Driver<TheirConfig>`. The plugin core parses
 * the generic config and environment, then calls `loadConfig` (defaults, then
 * validation; throws ConfigError, code 7, before anything is changed) and one
 * of the verbs. ADD runs as a transaction: every side effect registers its
 * undo, and a failure unwinds them in reverse so nothing of the call is left.
 */
import type { Attachment, NetConf, Result } from '../types';
import { CniCode, UnsupportedFieldError } from '../types';
import { MeshworkError } from '../../lib/errors';
import type { SpecVersion } from '../version';
import type { IpamResult } from '../ipam/types';

/** IPAM bound to one call: ours or the external plugin named by `ipam.type`. */
export interface IpamPort {
  /** False when the config has no `ipam` section (a driver may then run L2-only). */
  readonly configured: boolean;
  add(): Promise<IpamResult>;
  del(): Promise<void>;
  check(): Promise<void>;
  gc(valid: Attachment[]): Promise<void>;
}

/**
 * The undo of a failed ADD's IPAM step: DEL, except that an IPAM which could
 * not read its config took nothing, so that config error is not reported a
 * second time as a cleanup failure.
 */
export function releaseAfterFailedAdd(ipam: IpamPort): Promise<void> {
  return ipam.del().catch((err: unknown) => {
    // CniError and IPAM's own errors both carry the CNI code as a string.
    if (err instanceof MeshworkError && err.code === String(CniCode.invalidConfig)) return;
    throw err;
  });
}

/**
 * Work a resident daemon may postpone (a network's teardown after its last
 * container: an ADD soon after cancels it, so pod churn does not rebuild the
 * bridge and nft table each time). A one-shot plugin process has none and
 * does such work at once.
 */
export interface Deferrer {
  later(key: string, fn: () => Promise<void>): void;
  cancel(key: string): void;
}

/** What every verb gets. */
export interface BaseContext {
  conf: NetConf;
  version: SpecVersion;
  rawStdin: Buffer;
  env: Record<string, string | undefined>;
  ipam: IpamPort;
  defer?: Deferrer;
}

/** ADD, DEL, CHECK: one attachment (container + interface). */
export interface AttachmentContext extends BaseContext {
  containerId: string;
  ifname: string;
  /** CNI_NETNS; may be absent or already gone on DEL. */
  netns?: string;
}

export interface GcContext extends BaseContext {
  validAttachments: Attachment[];
}

export interface Driver<C = unknown> {
  readonly name: string;
  /** Defaults, then validation of the driver's own fields. Pure: changes nothing. */
  loadConfig(conf: NetConf): C;
  /** Wires the attachment; on failure leaves nothing behind (use `transaction`). */
  add(ctx: AttachmentContext, cfg: C): Promise<Result>;
  /** Idempotent: a missing namespace, link, allocation or rule is success. */
  del(ctx: AttachmentContext, cfg: C): Promise<void>;
  /** Compares `prev` (the ADD result) with the kernel; throws when they differ. */
  check(ctx: AttachmentContext, cfg: C, prev: Result): Promise<void>;
  /** Removes host-side objects and allocations of attachments not in `validAttachments`. */
  gc(ctx: GcContext, cfg: C): Promise<void>;
  /** Throws CniError 50/51 when the driver cannot serve ADD now. */
  status(ctx: BaseContext, cfg: C): Promise<void>;
}

/** A failure while unwinding; reported in the error's details, never hidden. */
export interface UndoFailure { what: string; error: string }

export class Transaction {
  private readonly undos: Array<{ what: string; fn: () => Promise<void> | void }> = [];
  /** Registers the undo of a step that has just succeeded. */
  onUndo(what: string, fn: () => Promise<void> | void): void {
    this.undos.push({ what, fn });
  }
  /** Runs every undo in reverse order, continuing past failures. */
  async rollback(): Promise<UndoFailure[]> {
    const failures: UndoFailure[] = [];
    for (const u of this.undos.splice(0).reverse()) {
      try { await u.fn(); } catch (err) { failures.push({ what: u.what, error: (err as Error)?.message ?? String(err) }); }
    }
    return failures;
  }
}

/** Runs `fn` as a transaction: on failure unwinds it and rethrows, with undo failures attached. */
export async function transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
  const tx = new Transaction();
  try {
    return await fn(tx);
  } catch (err) {
    const failures = await tx.rollback();
    if (failures.length && err && typeof err === 'object') Object.assign(err, { undoFailures: failures });
    throw err;
  }
}

/**
 * Known drivers, loaded lazily so a call pays only for the one it uses.
 * Explicit requires (no computed paths) keep the set visible to bundlers.
 */
const registry: Record<string, () => { driver: Driver<unknown> }> = {
  bridge: () => require('./bridge'),
  overlay: () => require('./overlay'),
  macvlan: () => require('./macvlan'),
};

export function loadDriver(name: string): Driver<unknown> {
  const load = registry[name];
  if (!load) throw new UnsupportedFieldError('driver', name, `known drivers: ${Object.keys(registry).join(', ')}`);
  let mod: { driver?: Driver<unknown> };
  try {
    mod = load();
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e?.code === 'MODULE_NOT_FOUND' && String(e.message).includes(`'./${name}'`)) throw new UnsupportedFieldError('driver', name, 'not available in this build');
    throw err;
  }
  if (!mod.driver) throw new UnsupportedFieldError('driver', name, 'module exports no driver');
  return mod.driver;
}
