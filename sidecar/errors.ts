/**
 * Failures of the request path. Each has a stable `code`; the proxy edge
 * (sidecar/http.ts) alone turns them into a response status and a header
 * saying why, so layers never write to the client themselves.
 */
import { MeshworkError } from '../lib/errors';

/** What the retry layer matches `retryOn` against. */
export type UpstreamFailureKind = 'connect-failure' | 'reset' | 'timeout';

export class UpstreamError extends MeshworkError {
  constructor(readonly kind: UpstreamFailureKind, readonly endpoint: string, cause?: unknown) {
    const why = cause instanceof Error ? cause.message : kind;
    super(kind === 'timeout' ? 'EUPSTREAMTIMEOUT' : kind === 'reset' ? 'EUPSTREAMRESET' : 'EUPSTREAMCONNECT',
      `upstream ${endpoint}: ${why}`, { cause });
  }
}

export class NoHealthyUpstreamError extends MeshworkError {
  constructor(service: string, subset: string) {
    super('ENOHEALTHYUPSTREAM', `service ${service}${subset ? ` subset ${subset}` : ''}: no healthy endpoint`);
  }
}

export class OverflowError extends MeshworkError {
  constructor(service: string, readonly limit: 'pending' | 'retry-budget') {
    super('EOVERFLOW', `service ${service}: ${limit} limit reached`);
  }
}

export class RequestTimeoutError extends MeshworkError {
  constructor(service: string, ms: number) {
    super('EREQUESTTIMEOUT', `service ${service}: no response within ${ms} ms`);
  }
}

export class FaultAbortError extends MeshworkError {
  constructor(readonly status: number) {
    super('EFAULTABORT', `fault injected: abort with ${status}`);
  }
}

export class BreakerOpenError extends MeshworkError {
  constructor(endpoint: string) {
    super('EBREAKEROPEN', `upstream ${endpoint}: circuit breaker open`);
  }
}

/** Maps a failure to what the client sees: status, and a header value naming the cause. */
export function responseFor(err: unknown): { status: number; reason: string; header: string } {
  if (err instanceof OverflowError) return { status: 503, reason: err.limit, header: 'x-meshwork-overflow' };
  if (err instanceof FaultAbortError) return { status: err.status, reason: 'abort', header: 'x-meshwork-fault' };
  if (err instanceof NoHealthyUpstreamError) return { status: 503, reason: 'no-healthy-upstream', header: 'x-meshwork-error' };
  if (err instanceof BreakerOpenError) return { status: 503, reason: 'breaker-open', header: 'x-meshwork-error' };
  if (err instanceof RequestTimeoutError) return { status: 504, reason: 'request-timeout', header: 'x-meshwork-error' };
  if (err instanceof UpstreamError) {
    if (err.kind === 'timeout') return { status: 504, reason: 'upstream-timeout', header: 'x-meshwork-error' };
    if (err.kind === 'reset') return { status: 502, reason: 'upstream-reset', header: 'x-meshwork-error' };
    return { status: 503, reason: 'upstream-connect-failure', header: 'x-meshwork-error' };
  }
  return { status: 500, reason: 'internal', header: 'x-meshwork-error' };
}
