/**
 * Typed failures of the cluster store. Each has a stable `code`, so callers
 * (agent, plugin, CLI) can branch on the kind of failure without parsing text.
 */
import { MeshworkError } from '../lib/errors';

/** A store spec string (`file:...`, `etcd:...`, `memory:`) that cannot be used. */
export class StoreSpecError extends MeshworkError {
  constructor(spec: string, why: string) {
    super('ESTORE_SPEC', `store spec ${JSON.stringify(spec)}: ${why} (expected file:/path, etcd:http://host:port[,...] or memory:)`);
  }
}

/** Arguments that break the Store contract (empty key, non-string value, duplicate key in a txn...). */
export class StoreArgumentError extends MeshworkError {
  constructor(message: string) {
    super('ESTORE_ARGUMENT', message);
  }
}

/** A watch asked for history the backend no longer keeps: re-list, then watch from the listing's revision + 1. */
export class StoreCompactedError extends MeshworkError {
  constructor(readonly requested: number, readonly compactedThrough: number | undefined, where: string) {
    const kept = compactedThrough ? ` (history kept only after revision ${compactedThrough})` : '';
    super('ESTORE_COMPACTED', `${where}: revision ${requested} is compacted${kept}; re-list and watch from the listing's revision + 1`);
  }
}

/** No backend reachable (etcd members down, store directory unusable, lock never obtained). */
export class StoreUnavailableError extends MeshworkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ESTORE_UNAVAILABLE', message, options);
  }
}

/** A write named a lease that does not exist (never granted, revoked or expired). */
export class LeaseNotFoundError extends MeshworkError {
  constructor(readonly leaseId: string) {
    super('ESTORE_LEASE_NOT_FOUND', `lease ${leaseId} not found (revoked or expired)`);
  }
}

/** A lease ran out before it could be renewed: every key attached to it is gone. */
export class LeaseLostError extends MeshworkError {
  constructor(readonly leaseId: string, why: string, options?: { cause?: unknown }) {
    super('ESTORE_LEASE_LOST', `lease ${leaseId} lost: ${why}`, options);
  }
}

/** The store was used after close(). */
export class StoreClosedError extends MeshworkError {
  constructor(where: string) {
    super('ESTORE_CLOSED', `${where}: store is closed`);
  }
}

/** The on-disk state of the file store cannot be read as a store. */
export class StoreCorruptError extends MeshworkError {
  constructor(file: string, why: string, options?: { cause?: unknown }) {
    super('ESTORE_CORRUPT', `store file ${file}: ${why}`, options);
  }
}
