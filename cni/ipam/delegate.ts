/**
 * Delegation to an external IPAM plugin (any `ipam.type` but "meshwork"), as
 * the CNI spec says: find the binary of that name on CNI_PATH, run it with
 * the same environment and the same stdin, and read its result or its error
 * JSON. Results of every spec version are converted to our version-free shape.
 */
import type * as ChildProcess from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshworkError } from '../../lib/errors';
import { CniCode, DelegatedIpamError, IpamConfigError } from './errors';
import type { IpamResult } from './types';

export interface ExecOutput { code: number; stdout: Buffer; stderr: Buffer }
export type ExecFn = (file: string, env: Record<string, string>, stdin: Buffer) => Promise<ExecOutput>;

const DEFAULT_TIMEOUT_MS = 5 * 60_000; // dhcp may wait for a lease

export const execFile: ExecFn = (file, env, stdin) => new Promise((resolve, reject) => {
  // Loaded here, not at the top: our own IPAM never spawns, and this is the plugin's start-up path.
  const { spawn } = require('node:child_process') as typeof ChildProcess;
  const child = spawn(file, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const timer = setTimeout(() => child.kill('SIGKILL'), DEFAULT_TIMEOUT_MS);
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  child.on('error', (e) => { clearTimeout(timer); reject(e); });
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out), stderr: Buffer.concat(err) });
  });
  child.stdin.on('error', () => { /* plugin exited without reading stdin; its exit code tells */ });
  child.stdin.end(stdin);
});

/** The plugin binary for `type` on CNI_PATH (first match wins, as in libcni). */
export function findPlugin(type: string, cniPath: string | undefined): string {
  if (!type || type.includes('/') || type === '.' || type === '..') {
    throw new IpamConfigError('ipam.type', `${JSON.stringify(type)} is not a plugin name`);
  }
  const dirs = (cniPath ?? '').split(':').filter(Boolean);
  if (dirs.length === 0) throw new MeshworkError(CniCode.invalidEnv, `CNI_PATH is empty: cannot find IPAM plugin "${type}"`);
  for (const dir of dirs) {
    const file = path.join(dir, type);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch { /* try the next directory */ }
  }
  throw new IpamConfigError('ipam.type', `IPAM plugin "${type}" not found in CNI_PATH (${dirs.join(':')})`);
}

type Json = Record<string, any>;

/** Converts a result of any spec version (0.1.0 to 1.1.0) to IpamResult. */
export function convertResult(raw: Json): IpamResult {
  const out: IpamResult = { ips: [], routes: [] };
  if (Array.isArray(raw.ips)) {
    for (const ip of raw.ips) {
      if (typeof ip?.address !== 'string') continue;
      out.ips.push(typeof ip.gateway === 'string' ? { address: ip.address, gateway: ip.gateway } : { address: ip.address });
    }
    for (const r of Array.isArray(raw.routes) ? raw.routes : []) {
      if (typeof r?.dst === 'string') out.routes.push(typeof r.gw === 'string' ? { dst: r.dst, gw: r.gw } : { dst: r.dst });
    }
  } else {
    // 0.1.0 / 0.2.0: one `ip4` and one `ip6` block, routes inside each.
    for (const block of [raw.ip4, raw.ip6]) {
      if (!block || typeof block.ip !== 'string') continue;
      out.ips.push(typeof block.gateway === 'string' ? { address: block.ip, gateway: block.gateway } : { address: block.ip });
      for (const r of Array.isArray(block.routes) ? block.routes : []) {
        if (typeof r?.dst === 'string') out.routes.push(typeof r.gw === 'string' ? { dst: r.dst, gw: r.gw } : { dst: r.dst });
      }
    }
  }
  const dns = raw.dns;
  if (dns && typeof dns === 'object') {
    const d: NonNullable<IpamResult['dns']> = {};
    if (Array.isArray(dns.nameservers) && dns.nameservers.length) d.nameservers = dns.nameservers.filter((s: unknown) => typeof s === 'string');
    if (typeof dns.domain === 'string' && dns.domain) d.domain = dns.domain;
    if (Array.isArray(dns.search) && dns.search.length) d.search = dns.search.filter((s: unknown) => typeof s === 'string');
    if (Array.isArray(dns.options) && dns.options.length) d.options = dns.options.filter((s: unknown) => typeof s === 'string');
    if (Object.keys(d).length) out.dns = d;
  }
  return out;
}

/** Runs the external plugin for `command`; returns its parsed stdout (undefined when empty). */
export async function delegate(
  type: string, command: string, env: Record<string, string | undefined>, stdin: Buffer, exec: ExecFn = execFile,
): Promise<Json | undefined> {
  const file = findPlugin(type, env.CNI_PATH);
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = v;
  childEnv.CNI_COMMAND = command;
  if (!childEnv.PATH && process.env.PATH) childEnv.PATH = process.env.PATH;

  let res: ExecOutput;
  try {
    res = await exec(file, childEnv, stdin);
  } catch (err) {
    throw new MeshworkError(CniCode.io, `IPAM plugin ${file}: could not run it: ${(err as Error).message}`, { cause: err });
  }
  const text = res.stdout.toString('utf8').trim();
  let parsed: Json | undefined;
  if (text) {
    try { parsed = JSON.parse(text) as Json; } catch { parsed = undefined; }
  }
  if (res.code !== 0) {
    if (parsed && (typeof parsed.code === 'number' || typeof parsed.code === 'string') && typeof parsed.msg === 'string') {
      const details = typeof parsed.details === 'string' && parsed.details ? parsed.details : undefined;
      throw new DelegatedIpamError(String(parsed.code), `IPAM plugin ${type}: ${parsed.msg}${details ? `: ${details}` : ''}`, details);
    }
    const why = res.stderr.toString('utf8').trim() || text || `exit status ${res.code}`;
    throw new DelegatedIpamError('999', `IPAM plugin ${type} failed: ${why}`);
  }
  if (text && !parsed) throw new MeshworkError(CniCode.decode, `IPAM plugin ${type}: result is not JSON: ${text.slice(0, 200)}`);
  return parsed;
}
