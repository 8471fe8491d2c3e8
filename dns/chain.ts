/**
 * The resolver chain: small handlers in one fixed order (cluster zone,
 * container names, cache, forward). A handler either answers or calls `next`;
 * the order is decided here and never by configuration.
 */
import type { Rr } from './wire';

/** What a handler sees of a question. */
export interface Question {
  /** Lower-case name without trailing dot. */
  name: string;
  type: number;
  qclass: number;
  /** Question in wire form, as the client sent it. */
  wire: Buffer;
  /** Source address of the client (container-name answers depend on its network). */
  client?: string;
}

export interface Answer {
  rcode: number;
  /** Authoritative data (our zones). */
  aa: boolean;
  answers: Rr[];
  authority: Rr[];
  additional: Rr[];
  /**
   * How long the encoded reply may be reused for the same question:
   * 'view' until the cluster view changes, a number of seconds, or 0 for
   * never (answers that depend on the client or rotate).
   */
  reuse: 'view' | number;
  /** Served from an expired cache entry because every upstream failed. */
  stale?: boolean;
}

export interface Context {
  /** Runs the whole chain for another name (CNAME chasing), bounded in depth. */
  resolve(name: string, type: number): Promise<Answer>;
  depth: number;
}

export type Next = (q: Question) => Promise<Answer>;

export interface Handler {
  readonly name: string;
  serve(q: Question, ctx: Context, next: Next): Promise<Answer>;
}

/** Composes handlers in the given order; `last` answers when nobody did. */
export function compose(handlers: Handler[], last: Next): (q: Question, ctx: Context) => Promise<Answer> {
  return (q, ctx) => {
    const step = (i: number): Next => (qq) => (i < handlers.length ? handlers[i].serve(qq, ctx, step(i + 1)) : last(qq));
    return step(0)(q);
  };
}

export function emptyAnswer(rcode: number, aa = false): Answer {
  return { rcode, aa, answers: [], authority: [], additional: [], reuse: 0 };
}
