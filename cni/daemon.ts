/**
 * The resident CNI daemon: the fast path of meshwork-cni. A runtime execs the
 * tiny C shim (native/cni-shim.c) for every call; the shim hands the call's
 * environment and stdin to this server over a unix socket and prints what it
 * gets back, so no call pays Node's start-up. The same `handle()` the
 * standalone plugin runs (cni/plugin.ts) serves the request, and the shim
 * falls back to that standalone plugin when no daemon answers.
 *
 * Wire format (version 1, all integers unsigned 32-bit big-endian):
 *   request:  "MWC1" envLen env stdinLen stdin   (env: NUL-separated KEY=VALUE)
 *   response: "MWR1" exitCode stdoutLen stdout stderrLen stderr
 * One request per connection.
 *
 * Requests run concurrently. Work inside container namespaces goes through
 * lib/netns.ts inNetnsSync, which switches the main thread and back in one
 * synchronous step; after each request the daemon still checks that its
 * thread is home and moves it back if a bug left it elsewhere.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { MeshworkError } from '../lib/errors';

export const DEFAULT_CNI_SOCKET = '/run/meshwork/cni.sock';
const REQ_MAGIC = Buffer.from('MWC1');
const RES_MAGIC = Buffer.from('MWR1');
const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

export interface CniRequest { env: Record<string, string | undefined>; stdin: Buffer }
export interface CniResponse { exitCode: number; stdout: Buffer | string; stderr: Buffer | string }
export type CniHandler = (req: CniRequest) => Promise<CniResponse>;

export interface Logger { info(msg: string): void; error(msg: string): void }

export interface CniDaemonOptions {
  socketPath?: string;
  handle: CniHandler;
  logger?: Logger;
  /** Reads the thread's current network namespace and moves it home; tests inject fakes. */
  netnsGuard?: NetnsGuard | false;
  /** How long stop() lets in-flight calls finish before cutting them off (default 30 s). */
  drainTimeoutMs?: number;
}

export interface DaemonStats {
  served: number; failed: number; inFlight: number; netnsRestored: number;
  /** Requests declined because the shim lives in another network namespace. */
  foreignNetns: number;
}

export interface CniDaemon {
  readonly socketPath: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): DaemonStats;
}

export class DaemonError extends MeshworkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EDAEMON', message, options);
  }
}

/** Frames one request; the shim does the same in C. */
export function encodeRequest(req: { env: Record<string, string | undefined>; stdin: Buffer }): Buffer {
  const env = Buffer.from(Object.entries(req.env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join('\0'));
  const head = Buffer.alloc(4);
  const envLen = Buffer.alloc(4);
  envLen.writeUInt32BE(env.length);
  const inLen = Buffer.alloc(4);
  inLen.writeUInt32BE(req.stdin.length);
  REQ_MAGIC.copy(head);
  return Buffer.concat([head, envLen, env, inLen, req.stdin]);
}

/** Parses a complete request frame; undefined while more bytes are needed. */
export function decodeRequest(buf: Buffer): CniRequest | undefined {
  if (buf.length < 8) return undefined;
  if (!buf.subarray(0, 4).equals(REQ_MAGIC)) throw new DaemonError('bad request magic (not a meshwork CNI shim?)');
  const envLen = buf.readUInt32BE(4);
  if (envLen > MAX_REQUEST_BYTES) throw new DaemonError(`request environment of ${envLen} bytes is too large`);
  if (buf.length < 12 + envLen) return undefined;
  const stdinLen = buf.readUInt32BE(8 + envLen);
  if (stdinLen > MAX_REQUEST_BYTES) throw new DaemonError(`request stdin of ${stdinLen} bytes is too large`);
  if (buf.length < 12 + envLen + stdinLen) return undefined;
  const env: Record<string, string> = {};
  for (const entry of buf.subarray(8, 8 + envLen).toString('utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return { env, stdin: Buffer.from(buf.subarray(12 + envLen, 12 + envLen + stdinLen)) };
}

export function encodeResponse(res: CniResponse): Buffer {
  const out = Buffer.isBuffer(res.stdout) ? res.stdout : Buffer.from(res.stdout);
  const err = Buffer.isBuffer(res.stderr) ? res.stderr : Buffer.from(res.stderr);
  const head = Buffer.alloc(16);
  RES_MAGIC.copy(head);
  head.writeUInt32BE(res.exitCode >>> 0, 4);
  head.writeUInt32BE(out.length, 8);
  const errLen = Buffer.alloc(4);
  errLen.writeUInt32BE(err.length);
  return Buffer.concat([head.subarray(0, 12), out, errLen, err]);
}

/** Parses a complete response frame; undefined while more bytes are needed. */
export function decodeResponse(buf: Buffer): { exitCode: number; stdout: Buffer; stderr: Buffer } | undefined {
  if (buf.length < 12) return undefined;
  if (!buf.subarray(0, 4).equals(RES_MAGIC)) throw new DaemonError('bad response magic');
  const outLen = buf.readUInt32BE(8);
  if (buf.length < 16 + outLen) return undefined;
  const errLen = buf.readUInt32BE(12 + outLen);
  if (buf.length < 16 + outLen + errLen) return undefined;
  return {
    exitCode: buf.readUInt32BE(4),
    stdout: Buffer.from(buf.subarray(12, 12 + outLen)),
    stderr: Buffer.from(buf.subarray(16 + outLen, 16 + outLen + errLen)),
  };
}

/** Keeps the daemon's main thread in the namespace it started in. */
export interface NetnsGuard { current(): string; home: string; restore(): void; close?(): void }

function defaultNetnsGuard(): NetnsGuard {
  const self = '/proc/thread-self/ns/net';
  const home = fs.readlinkSync(self);
  const homeFd = fs.openSync(self, 'r');
  return {
    home,
    current: () => fs.readlinkSync(self),
    restore: () => {
      // Loaded only if ever needed: the native addon is the one way back.
      const { loadNative } = require('../lib/netns') as typeof import('../lib/netns');
      const n = loadNative();
      n.setns(homeFd, n.CLONE_NEWNET);
    },
    close: () => fs.closeSync(homeFd),
  };
}

/** CNI error JSON for failures of the daemon itself (plugin-specific code 100). */
function internalError(msg: string): CniResponse {
  return { exitCode: 1, stdout: `${JSON.stringify({ cniVersion: '1.0.0', code: 100, msg })}\n`, stderr: '' };
}

export function createCniDaemon(opts: CniDaemonOptions): CniDaemon {
  const socketPath = path.resolve(opts.socketPath ?? process.env.MESHWORK_CNI_SOCKET ?? DEFAULT_CNI_SOCKET);
  const log: Logger = opts.logger ?? { info: () => {}, error: (m) => process.stderr.write(`meshwork-cni-daemon: ${m}\n`) };
  const stats: DaemonStats = { served: 0, failed: 0, inFlight: 0, netnsRestored: 0, foreignNetns: 0 };
  let server: net.Server | undefined;
  let guard: NetnsGuard | undefined;
  let socketIno: number | undefined;
  /** Connections that have not sent a whole request yet: dropped at stop. */
  const idle = new Set<net.Socket>();
  const all = new Set<net.Socket>();
  const drainMs = opts.drainTimeoutMs ?? 30_000;

  // "dev:ino" of our namespace, as the shim reports its own (MESHWORK_SHIM_NETNS).
  let home: string | undefined;
  function homeNetns(): string {
    if (home === undefined) {
      const st = fs.statSync('/proc/self/ns/net');
      home = `${st.dev}:${st.ino}`;
    }
    return home;
  }

  function checkHome(): void {
    if (!guard) return;
    if (guard.current() !== guard.home) {
      stats.netnsRestored++;
      log.error(`main thread was left in ${guard.current()} after a request; moving it back to ${guard.home}`);
      guard.restore();
    }
  }

  async function serve(req: CniRequest): Promise<CniResponse> {
    stats.inFlight++;
    try {
      const res = await opts.handle(req);
      stats.served++;
      return res;
    } catch (err) {
      stats.failed++;
      return internalError(`meshwork daemon: ${(err as Error)?.message ?? String(err)}`);
    } finally {
      stats.inFlight--;
      checkHome();
    }
  }

  function onConnection(sock: net.Socket): void {
    idle.add(sock);
    all.add(sock);
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    sock.on('error', () => { /* the shim went away; nothing to answer */ });
    sock.on('close', () => { idle.delete(sock); all.delete(sock); });
    sock.on('end', () => { if (!done) sock.destroy(); });
    sock.on('data', (chunk: Buffer) => {
      if (done) return;
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      let req: CniRequest | undefined;
      try {
        req = decodeRequest(buf);
      } catch (err) {
        done = true;
        sock.end(encodeResponse(internalError(`meshwork daemon: ${(err as Error).message}`)));
        return;
      }
      if (!req) return;
      done = true;
      idle.delete(sock);
      // A shim from another network namespace must not be served here: close
      // without a reply, which makes it run the standalone plugin in its own.
      const shimNs = req.env.MESHWORK_SHIM_NETNS;
      if (shimNs !== undefined && shimNs !== homeNetns()) {
        stats.foreignNetns++;
        sock.destroy();
        return;
      }
      void serve(req).then((res) => { if (!sock.destroyed) sock.end(encodeResponse(res)); });
    });
  }

  /** True when something already answers on the path. */
  function probe(): Promise<boolean> {
    return new Promise((resolve) => {
      const c = net.connect(socketPath);
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
  }

  return {
    socketPath,
    async start() {
      if (server) return;
      fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
      if (fs.existsSync(socketPath) && await probe()) throw new DaemonError(`another daemon already listens on ${socketPath}`);
      guard = opts.netnsGuard === false ? undefined : opts.netnsGuard ?? defaultNetnsGuard();
      // Listen on a private name, restrict it to root, then rename into place:
      // the socket is never reachable with looser permissions, and a stale one is replaced atomically.
      const tmp = `${socketPath}.${process.pid}.tmp`;
      fs.rmSync(tmp, { force: true });
      // Half-open: the shim shuts its write side after the request and still waits for the reply.
      const srv = net.createServer({ allowHalfOpen: true }, onConnection);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', (e) => reject(new DaemonError(`listening on ${socketPath}: ${e.message}`, { cause: e })));
        srv.listen(tmp, () => resolve());
      });
      fs.chmodSync(tmp, 0o600);
      fs.renameSync(tmp, socketPath);
      socketIno = fs.statSync(socketPath).ino;
      server = srv;
      log.info(`listening on ${socketPath}`);
    },
    async stop() {
      const srv = server;
      if (!srv) return;
      server = undefined;
      // Remove the path first so new shims fall back at once, then let in-flight calls finish.
      try { if (fs.statSync(socketPath).ino === socketIno) fs.unlinkSync(socketPath); } catch { /* already gone */ }
      const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
      for (const s of idle) s.destroy();
      // In-flight calls get `drainTimeoutMs` to finish; a stuck one must not hold the node agent's shutdown.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => { timer = setTimeout(() => { for (const s of all) s.destroy(); resolve(); }, drainMs); });
      await Promise.race([closed, timeout]);
      clearTimeout(timer);
      guard?.close?.();
      guard = undefined;
    },
    stats: () => ({ ...stats }),
  };
}

function parseArgs(argv: string[]): { socket?: string } {
  const out: { socket?: string } = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--socket') out.socket = argv[++i];
    else if (a.startsWith('--socket=')) out.socket = a.slice('--socket='.length);
    else throw new DaemonError(`unknown argument ${JSON.stringify(a)} (usage: daemon.js [--socket PATH])`);
  }
  if (out.socket === '') throw new DaemonError('--socket needs a path');
  return out;
}

/**
 * Loads what an ADD needs now rather than on the first call (the plugin loads
 * IPAM and drivers lazily to keep the standalone path lean). Best effort: a
 * module that fails to load fails its own call later with a proper error.
 */
function warmUp(): void {
  for (const load of [() => require('./ipam/index'), () => (require('./drivers/driver') as { loadDriver?: (n: string) => unknown }).loadDriver?.('bridge')]) {
    try { load(); } catch { /* reported by the call that needs it */ }
  }
}

/** `node dist/cni/daemon.js [--socket PATH]`: serves until SIGTERM/SIGINT. */
export async function main(argv: string[]): Promise<number> {
  let daemon: CniDaemon;
  let handler: import('./plugin').CniHandler;
  try {
    const args = parseArgs(argv);
    handler = (require('./plugin') as typeof import('./plugin')).handle;
    daemon = createCniDaemon({ socketPath: args.socket, handle: handler, logger: { info: (m) => process.stderr.write(`meshwork-cni-daemon: ${m}\n`), error: (m) => process.stderr.write(`meshwork-cni-daemon: ${m}\n`) } });
    await daemon.start();
    warmUp();
  } catch (err) {
    process.stderr.write(`meshwork-cni-daemon: ${(err as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await daemon.stop();
  // Finishes postponed teardowns (bridge, nft table) and closes the plugin's stores.
  await handler.close();
  return 0;
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
