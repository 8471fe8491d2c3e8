/**
 * The cluster store contract. Every backend (embedded file store, etcd, the
 * in-memory fake for unit tests) implements exactly this and runs the one
 * contract suite in test/store/. Keys are plain strings under `/meshwork/`
 * (see store/keys.ts); values are JSON text. Revisions are store-wide and
 * monotonically increasing, as in etcd: every write bumps the revision.
 */
export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the last write to this key. */
  modRevision: number;
  /** Revision at which the key was (last) created. */
  createRevision: number;
  /** Lease the key is attached to, if any: the key disappears when it expires. */
  lease?: string;
}

export interface ListResult {
  items: KeyValue[];
  /** Store revision the listing was taken at: watch from `revision + 1` to miss nothing. */
  revision: number;
}

export type WatchEvent =
  | { type: 'put'; kv: KeyValue; revision: number }
  | { type: 'delete'; key: string; revision: number };

export interface Watch {
  /** Stops the watch; no event is delivered after it resolves. */
  close(): Promise<void>;
}

export interface WatchOptions {
  /** First revision to deliver (inclusive). Omitted: changes after now. */
  fromRevision?: number;
  /**
   * Called when the backend cannot resume from `fromRevision` (compacted):
   * the caller must re-list. Without it, the watch errors through onError.
   */
  onError?: (err: Error) => void;
}

/** One operation of an all-or-nothing transaction. */
export type TxnOp =
  | { op: 'put'; key: string; value: string; lease?: string }
  | { op: 'delete'; key: string };

/** A guard of a transaction: the key's modRevision must equal `modRevision` (0 = key absent). */
export interface TxnCompare { key: string; modRevision: number }

export interface Lease {
  readonly id: string;
  readonly ttlSeconds: number;
  /** Renews the lease once; the backend also renews it automatically until revoked. */
  keepAlive(): Promise<void>;
  /** Ends the lease now: every key attached to it is deleted. */
  revoke(): Promise<void>;
  /** Fires if the lease could not be renewed before it expired. */
  onLost(cb: (err: Error) => void): void;
}

export interface Store {
  get(key: string): Promise<KeyValue | undefined>;
  list(prefix: string): Promise<ListResult>;
  /** Unconditional write; returns the new revision. */
  put(key: string, value: string, opts?: { lease?: string }): Promise<number>;
  /**
   * Compare-and-set: writes only if the key's modRevision is `expected`
   * (0 means "the key must not exist"). `value === null` deletes. Returns
   * whether it applied.
   */
  cas(key: string, expected: number, value: string | null, opts?: { lease?: string }): Promise<boolean>;
  /** Applies every op if every compare holds, atomically; returns whether it applied. */
  txn(compares: TxnCompare[], ops: TxnOp[]): Promise<boolean>;
  /** Deletes a key; returns whether it existed. */
  delete(key: string): Promise<boolean>;
  /** A lease that keeps itself alive until revoked or the process dies. */
  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Calls `onEvent` for each change under `prefix`, in revision order. */
  watch(prefix: string, onEvent: (ev: WatchEvent) => void, opts?: WatchOptions): Promise<Watch>;
  close(): Promise<void>;
}
