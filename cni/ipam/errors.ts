/**
 * IPAM errors carry the CNI well-known error code as their `code`, so the
 * plugin edge can print them as the spec's error JSON unchanged.
 */
import { MeshworkError } from '../../lib/errors';

/** CNI SPEC.md well-known error codes that IPAM raises. */
export const CniCode = {
  incompatibleVersion: '1',
  unknownContainer: '3',
  invalidEnv: '4',
  io: '5',
  decode: '6',
  invalidConfig: '7',
  tryAgainLater: '11',
} as const;

/** The network config or a runtime argument is wrong; the message names the field. */
export class IpamConfigError extends MeshworkError {
  constructor(field: string, problem: string) {
    super(CniCode.invalidConfig, `${field}: ${problem}`);
  }
}

/**
 * No address is free in a range set. Code 11 ("try again later"): the
 * condition clears by itself when another attachment on the network is
 * deleted, and runtimes (kubelet, containerd) already retry sandbox creation
 * with backoff, so telling them to retry is the honest answer; the message
 * still says plainly that the range is full.
 */
export class IpamExhaustedError extends MeshworkError {
  constructor(network: string, ranges: string, allocated: number) {
    super(CniCode.tryAgainLater, `network ${network}: no free address in ${ranges} (${allocated} allocated)`);
  }
}

/** A requested static address is held by another attachment: retryable once that one goes. */
export class IpamAddressInUseError extends MeshworkError {
  constructor(field: string, ip: string, owner: string) {
    super(CniCode.tryAgainLater, `${field}: ${ip} is already allocated to ${owner}`);
  }
}

/** The cross-process lock could not be taken in time (another plugin holds it). */
export class IpamBusyError extends MeshworkError {
  constructor(what: string, cause?: unknown) {
    super(CniCode.tryAgainLater, `${what}: IPAM store is busy, try again later`, { cause });
  }
}

/** Reading or writing the reservation store failed. */
export class IpamStoreError extends MeshworkError {
  constructor(what: string, cause?: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(CniCode.io, `${what}: ${reason}`, { cause });
  }
}

/** CHECK found no allocation for the attachment (or a different one). */
export class IpamCheckError extends MeshworkError {
  constructor(message: string) {
    super(CniCode.unknownContainer, message);
  }
}

/** An external IPAM plugin failed; its own code and message are passed through. */
export class DelegatedIpamError extends MeshworkError {
  constructor(code: string, message: string, readonly details?: string) {
    super(code, message);
  }
}
