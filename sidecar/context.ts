/**
 * The per-request state passed down the layer stack, and the layer shape:
 * `(next) => (ctx) => Promise<upstream response>`. Layers are composed once at
 * start-up (sidecar/stack.ts); each reads only the fields it needs.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CompiledRoute, SubsetRuntime, Upstream } from './catalog';
import type { Endpoint } from './endpoint';

/** What layers read of a request: node:http's IncomingMessage or the fast path's parsed head. */
export interface ProxyRequest {
  readonly method?: string;
  readonly url?: string;
  readonly headers: IncomingHttpHeaders;
}

/**
 * What layers see of an upstream response: its status, a way to discard the
 * body, and 'close' once the body is over (node:http IncomingMessage or the
 * fast path's FastResponse).
 */
export interface UpstreamResponse {
  readonly statusCode?: number;
  resume(): unknown;
  once(event: 'close', listener: () => void): unknown;
}

export interface RequestCtx {
  readonly req: ProxyRequest;
  /** The request body when it could be buffered (replayable); null when streamed through once. */
  readonly body: Buffer | null;
  readonly upstream: Upstream;
  readonly sourceIp: string;
  route?: CompiledRoute;
  subset?: SubsetRuntime;
  endpoint?: Endpoint;
  /** Endpoints earlier attempts used. */
  tried?: Set<Endpoint>;
  /** Per-try timeout of the attempt about to run, ms. */
  perTryTimeoutMs?: number;
  /** Set when the overall timeout fired or the client went away: no new attempt starts. */
  expired?: boolean;
  /** Aborts the attempt in flight (set by forward). */
  cancel?: () => void;
  /** Response headers the edge adds (e.g. which fault fired). */
  extraHeaders?: Record<string, string>;
  /** Set for requests of the fast path: the whole request head as it goes upstream (request line, fields, blank line). */
  fastHead?: string;
}

export type Handler = (ctx: RequestCtx) => Promise<UpstreamResponse>;
export type Layer = (next: Handler) => Handler;

/** Composes layers outermost first: compose([a, b], h) = a(b(h)). */
export function compose(layers: Layer[], innermost: Handler): Handler {
  return layers.reduceRight((next, layer) => layer(next), innermost);
}
