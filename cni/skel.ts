/**
 * The plugin's edge: CNI_* environment parsing and turning any error into the
 * spec's error JSON with the right well-known code. No process globals: the
 * environment comes in as a plain object.
 */
import { MeshworkError } from '../lib/errors';
import { CniCode, CniError, EnvError, type CallEnv, type CniCommand } from './types';
import { LATEST, type SpecVersion } from './version';

const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];
/** SPEC.md: container IDs start alphanumeric, then alphanumerics, "_", "." or "-". */
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function parseCommand(v: string | undefined): CniCommand {
  if (!v) throw new EnvError('CNI_COMMAND', 'required (one of ADD, DEL, CHECK, VERSION, STATUS, GC)');
  if (!(COMMANDS as readonly string[]).includes(v)) throw new EnvError('CNI_COMMAND', `unknown command ${JSON.stringify(v)} (expected one of ${COMMANDS.join(', ')})`);
  return v as CniCommand;
}

/** Parses CNI_ARGS ("K1=V1;K2=V2"). */
export function parseCniArgs(v: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!v) return out;
  for (const pair of v.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new EnvError('CNI_ARGS', `expected KEY=VALUE pairs separated by ";", got ${JSON.stringify(pair)}`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

export function validIfname(name: string): boolean {
  return name.length > 0 && name.length <= 15 && name !== '.' && name !== '..' && !/[\s/:]/.test(name);
}

/** Validates the variables each command needs (SPEC.md "Parameters"). */
export function parseCallEnv(env: Record<string, string | undefined>, command: CniCommand): CallEnv {
  const needsAttachment = command === 'ADD' || command === 'DEL' || command === 'CHECK';
  const containerId = env.CNI_CONTAINERID ?? '';
  const ifname = env.CNI_IFNAME ?? '';
  const netns = env.CNI_NETNS || undefined;
  if (needsAttachment) {
    if (!containerId) throw new EnvError('CNI_CONTAINERID', 'required');
    if (!CONTAINER_ID.test(containerId)) throw new EnvError('CNI_CONTAINERID', `${JSON.stringify(containerId)} is not a valid container ID (letters, digits, "_", "." and "-", starting with a letter or digit)`);
    if (!ifname) throw new EnvError('CNI_IFNAME', 'required');
    if (!validIfname(ifname)) throw new EnvError('CNI_IFNAME', `${JSON.stringify(ifname)} is not a valid interface name (1-15 characters, no "/", ":" or spaces)`);
    if (command !== 'DEL' && !netns) throw new EnvError('CNI_NETNS', 'required');
  }
  if (netns !== undefined && !netns.startsWith('/')) throw new EnvError('CNI_NETNS', `expected an absolute path, got ${JSON.stringify(netns)}`);
  if (command === 'GC' && !env.CNI_PATH) throw new EnvError('CNI_PATH', 'required for GC');
  return {
    command,
    containerId,
    ifname,
    netns,
    args: parseCniArgs(env.CNI_ARGS),
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
    env,
  };
}

/** Maps any error to a CNI code and message; unknown failures are code 100 with their message. */
export function toCniError(err: unknown): { code: number; msg: string; details?: string } {
  if (err instanceof CniError) return { code: Number(err.code), msg: err.message, details: withUndo(err, err.details) };
  if (err instanceof MeshworkError) {
    const n = Number(err.code);
    const details = withUndo(err, (err as { details?: string }).details);
    if (Number.isInteger(n) && n > 0) return { code: n, msg: err.message, details };
    if (err.code === 'ENETNS') return { code: CniCode.invalidEnv, msg: `CNI_NETNS: ${err.message}`, details };
    // The cluster store is down (etcd members unreachable): transient, so the runtime should retry.
    if (err.code === 'ESTORE_UNAVAILABLE') return { code: CniCode.tryAgainLater, msg: err.message, details };
    return { code: CniCode.internal, msg: err.message, details: details ?? err.code };
  }
  const e = err as Error;
  return { code: CniCode.internal, msg: e?.message ?? String(err), details: withUndo(err, e?.stack?.split('\n').slice(1, 4).join(' ').trim()) };
}

function withUndo(err: unknown, details: string | undefined): string | undefined {
  const u = (err as { undoFailures?: Array<{ what: string; error: string }> })?.undoFailures;
  if (!u?.length) return details;
  const extra = `cleanup after the failure also failed: ${u.map((f) => `${f.what}: ${f.error}`).join('; ')}`;
  return details ? `${details}; ${extra}` : extra;
}

export interface ErrorJson { cniVersion: string; code: number; msg: string; details?: string }

export function errorJson(err: unknown, version: SpecVersion | string = LATEST): ErrorJson {
  const e = toCniError(err);
  const out: ErrorJson = { cniVersion: version, code: e.code, msg: e.msg };
  if (e.details) out.details = e.details;
  return out;
}
