/**
 * The one door to the kernel's routing netlink. Only files in cni/netlink/
 * import the raw `netlink` package. A socket belongs to the namespace it was
 * opened in, so opening it inside a pod's namespace (through lib/netns.ts)
 * is all it takes to program that namespace afterwards, from this thread.
 */
// Only the package's socket layer is loaded eagerly: its generated rtnetlink
// structs cost ~100 ms of start-up, which a plugin run once per container
// should not pay. link/addr/route encode their messages with codec.ts; the
// full `rt` API stays available, loaded on first use, for the other verbs.
import { createNetlink, type NetlinkSocket } from 'netlink/dist/netlink';
import type { NetlinkMessage } from 'netlink/dist/structs';
import type { RtNetlinkSocket, rt } from 'netlink';
import { MeshworkError } from '../../lib/errors';
import { inNetnsSync, openNetns } from '../../lib/netns';

/** Any failure the kernel reports; `errno` is the symbolic name (EEXIST...). */
export class NetlinkError extends MeshworkError {
  constructor(readonly errno: string, readonly op: string, options?: { cause?: unknown }) {
    super(`NETLINK_${errno}`, `${op}: ${errno}`, options);
  }
}
export class ExistsError extends NetlinkError {}
export class NotFoundError extends NetlinkError {}
export class BusyError extends NetlinkError {}
export class InvalidError extends NetlinkError {}
/** A dump kept being interrupted by concurrent changes. */
export class DumpInterruptedError extends NetlinkError {}

const byErrno: Record<string, new (errno: string, op: string, o?: { cause?: unknown }) => NetlinkError> = {
  EEXIST: ExistsError,
  ENOENT: NotFoundError,
  ENODEV: NotFoundError,
  ESRCH: NotFoundError,
  EADDRNOTAVAIL: NotFoundError,
  EBUSY: BusyError,
  EINVAL: InvalidError,
  ERANGE: InvalidError,
  EOPNOTSUPP: InvalidError,
};

/** Maps the package's `Request rejected: EXXX` errors (and errno exceptions) to typed errors. */
export function mapError(op: string, err: unknown): Error {
  if (err instanceof NetlinkError) return err;
  const e = err as { code?: unknown; message?: unknown };
  let errno = typeof e?.code === 'string' && /^E[A-Z]+$/.test(e.code) ? e.code : undefined;
  if (!errno && typeof e?.message === 'string') errno = /Request rejected: (E[A-Z0-9]+|-?\d+)/.exec(e.message)?.[1];
  if (!errno) return new NetlinkError('EUNKNOWN', `${op}: ${String(e?.message ?? err)}`, { cause: err });
  const Cls = byErrno[errno] ?? NetlinkError;
  return new Cls(errno, op, { cause: err });
}

/** Runs one kernel request, turning its failure into a typed error naming `op`. */
export async function call<T>(op: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw mapError(op, err);
  }
}

const NETLINK_ROUTE = 0;
const NLM_F_DUMP = 0x300;
const NLM_F_DUMP_INTR = 0x10;

export interface Netlink {
  /** The package's plain netlink socket (requests with raw payloads; see codec.ts). */
  readonly raw: NetlinkSocket;
  /** The package's rtnetlink API on the same socket, loaded on first use. */
  readonly rt: RtNetlinkSocket;
  /** Namespace path the socket works on; undefined = the caller's own. */
  readonly netns?: string;
  close(): void;
}

type RtModule = typeof import('netlink/dist/rt/rt');
const rtModule = (): RtModule => require('netlink/dist/rt/rt') as RtModule;
type RtStructs = typeof import('netlink/dist/rt/structs');
const rtStructs = (): RtStructs => require('netlink/dist/rt/structs') as RtStructs;

/** Opens an rtnetlink socket in the current namespace, or in `netnsPath`. */
export function openNetlink(netnsPath?: string): Netlink {
  const open = () => createNetlink(NETLINK_ROUTE);
  let sock: NetlinkSocket;
  try {
    sock = netnsPath ? inNetnsSync(netnsPath, open) : open();
  } catch (err) {
    if (err instanceof MeshworkError) throw err;
    throw mapError(`open netlink socket${netnsPath ? ` in ${netnsPath}` : ''}`, err);
  }
  let closed = false;
  let rtSock: RtNetlinkSocket | undefined;
  return {
    raw: sock,
    get rt(): RtNetlinkSocket {
      return (rtSock ??= new (rtModule().RtNetlinkSocket)(sock));
    },
    netns: netnsPath,
    close() {
      if (!closed) { closed = true; sock.close(); }
    },
  };
}

/** One request (REQUEST|ACK added by the package); returns the reply messages (none for a plain ACK). */
export async function request(nl: Netlink, op: string, type: number, payload: Buffer[], flags = 0): Promise<NetlinkMessage[]> {
  const [msgs] = await call(op, () => nl.raw.request(type, payload, { flags }));
  return msgs;
}

/** Opens a socket, runs `fn`, always closes it. */
export async function withNetlink<T>(netnsPath: string | undefined, fn: (nl: Netlink) => Promise<T>): Promise<T> {
  const nl = openNetlink(netnsPath);
  try {
    return await fn(nl);
  } finally {
    nl.close();
  }
}

/** Opens a namespace file for IFLA_NET_NS_FD; the caller closes it. */
export function netnsFd(netnsPath: string): number {
  return openNetns(netnsPath);
}

const MAX_DUMP_TRIES = 5;

/**
 * A dump request that retries when the kernel flags it NLM_F_DUMP_INTR (the
 * table changed while it was being read, so the listing may be incomplete).
 * Returns the raw messages; codec.ts decodes them.
 */
export async function dumpRaw(nl: Netlink, op: string, type: number, payload: Uint8Array[]): Promise<NetlinkMessage[]> {
  for (let attempt = 1; ; attempt++) {
    const [msgs] = await call(op, () => nl.raw.request(type, payload, { flags: NLM_F_DUMP }));
    if (!msgs.some((m) => (m.flags & NLM_F_DUMP_INTR) !== 0)) return msgs;
    if (attempt >= MAX_DUMP_TRIES) throw new DumpInterruptedError('EINTR', `${op}: dump interrupted ${attempt} times`);
  }
}

/** `dumpRaw`, parsed by the package's rtnetlink structs (loaded on first use). */
export async function dump(nl: Netlink, op: string, type: rt.MessageType, payload: Uint8Array[]): Promise<rt.Message[]> {
  const msgs = await dumpRaw(nl, op, type, payload);
  const { parseMessage } = rtStructs();
  return msgs.map((m) => parseMessage(m.type as rt.MessageType, m.data));
}
