/**
 * `meshwork install` / `meshwork uninstall`: put meshwork on a host where CNI
 * runtimes and systemd look for it, and take exactly that away again.
 *
 * What install writes (paths under --prefix, DESTDIR-style: file contents
 * always name the final on-host paths):
 *   <cni-bin-dir>/meshwork-cni       a launcher: `MESHWORK_NODE=<node> exec <this install>/bin/meshwork-cni "$@"`.
 *                                    The plugin needs Node.js, its native addon and node_modules,
 *                                    so rather than copy a tree we point at this installation;
 *                                    reinstall after moving it.
 *   <cni-conf-dir>/10-<net>.conflist the network config, from flags or --config FILE.
 *   /etc/meshwork/agent.env          the agent's settings (node, underlay, store, network).
 *   /etc/systemd/system/meshwork-agent.service
 *   /etc/meshwork/installed.json     the manifest: every file and directory install created, with
 *                                    its sha256, so uninstall removes exactly those (and leaves a
 *                                    file someone edited since, unless --force).
 * Writes are atomic (temp file + rename) and an install that fails part-way
 * restores what it replaced and removes what it created.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import YAML from 'yaml';
import { MeshworkError } from '../lib/errors';
import { parseCidr, parseIp } from '../cni/ipam/allocator';

export class InstallError extends MeshworkError {
  constructor(message: string, options?: { cause?: unknown }) { super('EINSTALL', message, options); }
}

export type Driver = 'bridge' | 'overlay' | 'macvlan';
export const DRIVERS: readonly Driver[] = ['bridge', 'overlay', 'macvlan'];

export interface InstallOptions {
  prefix: string;
  cniBinDir: string;
  cniConfDir: string;
  systemdDir: string;
  network: string;
  driver: Driver;
  mesh: boolean;
  /** A conflist (or a single plugin config), JSON or YAML; replaces the one built from flags. */
  config?: string;
  store: string;
  subnet: string;
  master?: string;
  node: string;
  underlay?: string;
  /** The meshwork installation the launcher and unit point at (this package by default). */
  packageRoot: string;
  /** The plugin entry the launcher runs (default <packageRoot>/bin/meshwork-cni). */
  pluginEntry?: string;
  nodeBinary: string;
  /** Skip agent.env and the systemd unit (e.g. in Kubernetes, where the agent runs as a container). */
  noSystemd: boolean;
  force: boolean;
}

export interface PlannedFile {
  /** Final on-host path (without the prefix). */
  path: string;
  mode: number;
  content: string;
  what: string;
}

export const MANIFEST_PATH = '/etc/meshwork/installed.json';

export interface Manifest {
  version: 1;
  installedAt: string;
  files: Array<{ path: string; sha256: string; mode: number; preexisting?: boolean }>;
  /** Directories install created, deepest last. */
  dirs: string[];
}

const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const sha256 = (s: string | Buffer) => crypto.createHash('sha256').update(s).digest('hex');
/** A string as one POSIX shell word. */
const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
/** A systemd ExecStart argument (quoted; `$` and `%` escaped so they stay literal). */
const sdq = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$').replace(/%/g, '%%')}"`;

/** Where a final path lands under the prefix. */
export function under(prefix: string, p: string): string {
  return path.join(prefix, p);
}

/** The plugin entry in the conflist built from flags. */
export function pluginConfig(o: InstallOptions): Record<string, unknown> {
  const ipam = { type: 'meshwork', ranges: [[{ subnet: o.subnet }]], routes: [{ dst: '0.0.0.0/0' }] };
  // The plugin writes endpoint records to `store` under `node`: the same store and node as the
  // agent's, or DNS, Services and `meshwork status` never see this host's pods.
  const base: Record<string, unknown> = { type: 'meshwork-cni', driver: o.driver, store: o.store, node: o.node };
  // The per-pod settings the plugin reads from runtimeConfig: a runtime passes only declared capabilities.
  const podCapabilities = { labels: true, hostname: true, aliases: true, mesh: true };
  switch (o.driver) {
    case 'bridge':
      Object.assign(base, { bridge: 'mw0', isGateway: true, ipMasq: true, ipam, capabilities: { portMappings: true, ...podCapabilities } });
      break;
    case 'overlay':
      // The agent leases the node's pod subnet and writes it to its state dir, where the driver reads it.
      Object.assign(base, { capabilities: { portMappings: true, ...podCapabilities } });
      break;
    case 'macvlan':
      if (!o.master) throw new InstallError('--driver macvlan needs --master IFACE (the host interface the macvlans hang off)');
      Object.assign(base, { master: o.master, mode: 'bridge', ipam, capabilities: podCapabilities });
      break;
  }
  if (o.mesh) base.mesh = true;
  return base;
}

/** Reads --config: a conflist, or one plugin config wrapped into one; JSON or YAML. */
export function loadConfigFile(file: string, o: Pick<InstallOptions, 'network'>): Record<string, unknown> {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (err: any) { throw new InstallError(`--config ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, { cause: err }); }
  let doc: any;
  try { doc = YAML.parse(text); } catch (err: any) { throw new InstallError(`--config ${file}: not JSON or YAML: ${err.message}`, { cause: err }); }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new InstallError(`--config ${file}: expected an object (a conflist or a plugin config)`);
  if (!('plugins' in doc)) {
    if (typeof doc.type !== 'string') throw new InstallError(`--config ${file}: neither a conflist ("plugins") nor a plugin config ("type")`);
    const { cniVersion = '1.0.0', name = o.network, ...plugin } = doc;
    doc = { cniVersion, name, plugins: [plugin] };
  }
  if (typeof doc.name !== 'string' || !NETWORK_NAME.test(doc.name)) throw new InstallError(`--config ${file}: name: expected a network name (letters, digits, "_", "." or "-"), got ${JSON.stringify(doc.name)}`);
  if (doc.cniVersion !== undefined && typeof doc.cniVersion !== 'string') throw new InstallError(`--config ${file}: cniVersion: expected a string`);
  if (!Array.isArray(doc.plugins) || doc.plugins.length === 0) throw new InstallError(`--config ${file}: plugins: expected a non-empty list`);
  doc.plugins.forEach((p: any, i: number) => {
    if (!p || typeof p.type !== 'string' || p.type === '') throw new InstallError(`--config ${file}: plugins[${i}].type: expected the plugin's name`);
  });
  return { cniVersion: '1.0.0', ...doc };
}

/** Every file install would write, pure except for reading --config. */
export function planInstall(o: InstallOptions): PlannedFile[] {
  if (!NETWORK_NAME.test(o.network)) throw new InstallError(`--network ${JSON.stringify(o.network)}: expected letters, digits, "_", "." or "-"`);
  if (!parseCidr(o.subnet)) throw new InstallError(`--subnet ${o.subnet}: expected a CIDR such as 10.88.0.0/16`);
  if (o.underlay !== undefined && !parseIp(o.underlay)) throw new InstallError(`--underlay ${o.underlay}: expected this host's IP address`);
  for (const [flag, p] of [['--cni-bin-dir', o.cniBinDir], ['--cni-conf-dir', o.cniConfDir], ['--systemd-dir', o.systemdDir]] as const) {
    if (!path.isAbsolute(p)) throw new InstallError(`${flag} ${p}: expected an absolute path`);
  }
  const conflist = o.config ? loadConfigFile(o.config, o) : { cniVersion: '1.0.0', name: o.network, plugins: [pluginConfig(o)] };
  const network = String(conflist.name);
  const entry = o.pluginEntry ?? path.join(o.packageRoot, 'bin', 'meshwork-cni');
  const cliEntry = path.join(o.packageRoot, 'bin', 'meshwork');
  const launcher = [
    '#!/bin/sh',
    '# meshwork CNI plugin launcher, written by `meshwork install`.',
    '# CNI runtimes run this file; it hands over to the plugin of the meshwork',
    '# installation below, with the Node.js that installed it (runtimes call',
    '# plugins with a minimal environment, so both paths are absolute).',
    '# Moved meshwork or Node.js? Run `meshwork install` again.',
    // The shim hands the call to the agent's resident daemon, or runs the plugin with this Node.js.
    // The plugin runs nft: a runtime's PATH may be empty or lack the sbin directories.
    'export PATH="${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"',
    `MESHWORK_NODE=${shq(o.nodeBinary)} exec ${shq(entry)} "$@"`,
    '',
  ].join('\n');
  const env = [
    '# meshwork agent settings, written by `meshwork install`; read by meshwork-agent.service.',
    `MESHWORK_NODE=${o.node}`,
    `MESHWORK_UNDERLAY=${o.underlay ?? ''}`,
    `MESHWORK_STORE=${o.store}`,
    `MESHWORK_NETWORK=${network}`,
    'MESHWORK_METRICS=127.0.0.1:9464',
    '',
  ].join('\n');
  const unit = [
    '[Unit]',
    'Description=meshwork node agent (overlay peers, node record, metrics)',
    `Documentation=file://${path.join(o.packageRoot, 'deploy', 'README.md')}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    'EnvironmentFile=/etc/meshwork/agent.env',
    // Quoted: an empty setting stays one (empty) argument the agent names, not a shifted command line.
    `ExecStart=${sdq(o.nodeBinary)} ${sdq(cliEntry)} agent --node "\${MESHWORK_NODE}" --underlay "\${MESHWORK_UNDERLAY}" --store "\${MESHWORK_STORE}" --network "\${MESHWORK_NETWORK}" --metrics "\${MESHWORK_METRICS}"`,
    'Restart=on-failure',
    'RestartSec=2',
    'LimitNOFILE=65536',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
  const files: PlannedFile[] = [
    { path: path.join(o.cniBinDir, 'meshwork-cni'), mode: 0o755, content: launcher, what: 'CNI plugin launcher' },
    { path: path.join(o.cniConfDir, `10-${network}.conflist`), mode: 0o644, content: JSON.stringify(conflist, null, 2) + '\n', what: `CNI network "${network}" (${o.config ? `from ${o.config}` : `driver ${o.driver}${o.mesh ? ', sidecar injected' : ''}`})` },
  ];
  if (!o.noSystemd) {
    files.push(
      { path: '/etc/meshwork/agent.env', mode: 0o644, content: env, what: 'agent settings' },
      { path: path.join(o.systemdDir, 'meshwork-agent.service'), mode: 0o644, content: unit, what: 'systemd unit for the agent' },
    );
  }
  return files;
}

export function renderDryRun(prefix: string, files: PlannedFile[]): string {
  const out = [`meshwork install --dry-run: nothing is written${prefix !== '/' ? ` (prefix ${prefix})` : ''}`];
  for (const f of [...files, { path: MANIFEST_PATH, mode: 0o644, content: '', what: 'install manifest (the list above, with checksums)' }]) {
    out.push('', `would write ${under(prefix, f.path)} (mode ${f.mode.toString(8).padStart(4, '0')}): ${f.what}`);
    for (const line of f.content.replace(/\n$/, '').split('\n')) if (f.content) out.push(`  | ${line}`);
  }
  return out.join('\n') + '\n';
}

function readManifest(prefix: string): Manifest | undefined {
  const p = under(prefix, MANIFEST_PATH);
  let text: string;
  try { text = fs.readFileSync(p, 'utf8'); } catch (err: any) {
    if (err.code === 'ENOENT') return undefined;
    throw new InstallError(`reading ${p}: ${err.message}`, { cause: err });
  }
  try {
    const m = JSON.parse(text) as Manifest;
    if (m.version !== 1 || !Array.isArray(m.files) || !Array.isArray(m.dirs)) throw new Error('unknown layout');
    return m;
  } catch (err: any) {
    throw new InstallError(`${p} is not a meshwork install manifest (${err.message}); remove it by hand if meshwork is not installed`);
  }
}

function writeAtomic(file: string, content: string, mode: number): void {
  const tmp = `${file}.meshwork-tmp-${process.pid}`;
  fs.writeFileSync(tmp, content, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

/** Missing ancestors of `dir` (outermost first), which mkdir -p would create. */
function missingDirs(dir: string): string[] {
  const out: string[] = [];
  for (let d = dir; !fs.existsSync(d); d = path.dirname(d)) out.unshift(d);
  return out;
}

export interface InstallReport { written: string[]; unchanged: string[]; removed: string[] }

export function applyInstall(prefix: string, files: PlannedFile[], force: boolean): InstallReport {
  const old = readManifest(prefix);
  const ours = new Map((old?.files ?? []).map((f) => [f.path, f]));
  const all = [...files];
  // Refuse to overwrite files we did not write, before touching anything.
  for (const f of all) {
    const target = under(prefix, f.path);
    if (!fs.existsSync(target) || ours.has(f.path) || force) continue;
    if (fs.readFileSync(target, 'utf8') === f.content) continue;
    throw new InstallError(`${target} exists and was not written by meshwork install; move it away or use --force`);
  }
  const undo: Array<() => void> = [];
  const report: InstallReport = { written: [], unchanged: [], removed: [] };
  const createdDirs = [...(old?.dirs ?? [])];
  const manifest: Manifest = { version: 1, installedAt: new Date().toISOString(), files: [], dirs: createdDirs };
  try {
    for (const f of [...all, { path: MANIFEST_PATH, mode: 0o644, content: '', what: '' }]) {
      const target = under(prefix, f.path);
      for (const d of missingDirs(path.dirname(target))) {
        fs.mkdirSync(d);
        undo.push(() => fs.rmdirSync(d));
        const rel = '/' + path.relative(prefix, d);
        if (!createdDirs.includes(rel)) createdDirs.push(rel);
      }
      if (f.path === MANIFEST_PATH) break;
      const before = fs.existsSync(target) ? fs.readFileSync(target) : undefined;
      const preexisting = ours.get(f.path)?.preexisting ?? (before !== undefined && before.toString('utf8') === f.content && !ours.has(f.path));
      manifest.files.push({ path: f.path, sha256: sha256(f.content), mode: f.mode, ...(preexisting ? { preexisting: true } : {}) });
      if (before !== undefined && before.toString('utf8') === f.content && (fs.statSync(target).mode & 0o7777) === f.mode) {
        report.unchanged.push(target);
        continue;
      }
      writeAtomic(target, f.content, f.mode);
      undo.push(before === undefined ? () => fs.rmSync(target, { force: true }) : () => writeAtomic(target, before.toString('utf8'), f.mode));
      report.written.push(target);
    }
    // Files an earlier install wrote that this one no longer does (e.g. a renamed network).
    for (const f of old?.files ?? []) {
      if (all.some((x) => x.path === f.path) || f.preexisting) continue;
      const target = under(prefix, f.path);
      if (fs.existsSync(target) && sha256(fs.readFileSync(target)) === f.sha256) {
        fs.rmSync(target);
        report.removed.push(target);
      }
    }
    writeAtomic(under(prefix, MANIFEST_PATH), JSON.stringify(manifest, null, 2) + '\n', 0o644);
    report.written.push(under(prefix, MANIFEST_PATH));
    return report;
  } catch (err: any) {
    for (const u of undo.reverse()) { try { u(); } catch { /* keep unwinding */ } }
    throw err instanceof MeshworkError ? err : new InstallError(`install failed and was undone: ${err.message}`, { cause: err });
  }
}

export interface UninstallReport { removed: string[]; kept: Array<{ path: string; why: string }>; missing: string[] }

export function applyUninstall(prefix: string, force: boolean, dryRun = false): UninstallReport {
  const m = readManifest(prefix);
  if (!m) throw new InstallError(`meshwork is not installed under ${prefix} (no ${under(prefix, MANIFEST_PATH)})`);
  const report: UninstallReport = { removed: [], kept: [], missing: [] };
  for (const f of m.files) {
    const target = under(prefix, f.path);
    if (f.preexisting) { report.kept.push({ path: target, why: 'was there before install' }); continue; }
    if (!fs.existsSync(target)) { report.missing.push(target); continue; }
    if (!force && sha256(fs.readFileSync(target)) !== f.sha256) { report.kept.push({ path: target, why: 'changed since install (use --force to remove)' }); continue; }
    if (!dryRun) fs.rmSync(target);
    report.removed.push(target);
  }
  const manifestPath = under(prefix, MANIFEST_PATH);
  if (!dryRun) fs.rmSync(manifestPath, { force: true });
  report.removed.push(manifestPath);
  for (const d of [...m.dirs].sort((a, b) => b.length - a.length)) {
    const dir = under(prefix, d);
    const shown = dir.endsWith('/') ? dir : `${dir}/`;
    if (dryRun) { report.removed.push(`${shown} (if empty)`); continue; }
    try { fs.rmdirSync(dir); report.removed.push(shown); } catch (err: any) {
      if (err.code === 'ENOTEMPTY' || err.code === 'EEXIST') report.kept.push({ path: shown, why: 'not empty' });
    }
  }
  return report;
}

/** The host's address on its default route: a sensible underlay default. */
export function defaultUnderlay(): string | undefined {
  try {
    const line = fs.readFileSync('/proc/net/route', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)).find((c) => c[1] === '00000000');
    const iface = line?.[0];
    return iface ? os.networkInterfaces()[iface]?.find((a) => a.family === 'IPv4')?.address : undefined;
  } catch {
    return undefined;
  }
}

interface Flags {
  prefix: string; cniBinDir: string; cniConfDir: string; systemdDir: string; network: string; driver: string; mesh?: boolean;
  config?: string; store?: string; subnet: string; master?: string; node?: string; underlay?: string; pluginEntry?: string; dryRun?: boolean; force?: boolean;
  packageRoot?: string; nodeBinary?: string; systemd?: boolean;
}

export function optionsFromFlags(f: Flags): InstallOptions {
  if (!DRIVERS.includes(f.driver as Driver)) throw new InstallError(`--driver ${f.driver}: expected one of ${DRIVERS.join(', ')}`);
  const packageRoot = f.packageRoot ? path.resolve(f.packageRoot) : path.resolve(__dirname, '..', '..');
  return {
    prefix: path.resolve(f.prefix),
    cniBinDir: f.cniBinDir,
    cniConfDir: f.cniConfDir,
    systemdDir: f.systemdDir,
    network: f.network,
    driver: f.driver as Driver,
    mesh: !!f.mesh,
    config: f.config,
    store: f.store ?? process.env.MESHWORK_STORE ?? 'file:/var/lib/meshwork',
    subnet: f.subnet,
    master: f.master,
    node: f.node ?? os.hostname(),
    underlay: f.underlay ?? defaultUnderlay(),
    packageRoot,
    pluginEntry: f.pluginEntry ? path.resolve(f.pluginEntry) : undefined,
    nodeBinary: f.nodeBinary ? path.resolve(f.nodeBinary) : process.execPath,
    noSystemd: f.systemd === false,
    force: !!f.force,
  };
}

function commonOptions(cmd: Command): Command {
  return cmd
    .option('--prefix <dir>', 'root to install under (DESTDIR-style; files still name their final paths)', '/')
    .option('--cni-bin-dir <dir>', 'where CNI runtimes look for plugins', '/opt/cni/bin')
    .option('--cni-conf-dir <dir>', 'where CNI runtimes look for network configs', '/etc/cni/net.d')
    .option('--systemd-dir <dir>', 'where the agent unit goes', '/etc/systemd/system')
    .option('--force', 'overwrite (install) or remove (uninstall) files changed by someone else')
    .option('--dry-run', 'print what would be done and change nothing');
}

export function register(program: Command): void {
  commonOptions(program.command('install').description('install the CNI plugin, a network config and the agent unit on this host'))
    .option('--network <name>', 'CNI network name', 'meshwork')
    .option('--driver <driver>', 'bridge, overlay or macvlan', 'bridge')
    .option('--mesh', 'inject the sidecar into pods of this network')
    .option('--config <file>', 'use this conflist (JSON or YAML) instead of one built from flags')
    .option('--store <spec>', 'cluster store for the agent and plugin (default $MESHWORK_STORE or file:/var/lib/meshwork)')
    .option('--subnet <cidr>', 'pod subnet of the bridge and macvlan drivers', '10.88.0.0/16')
    .option('--master <iface>', 'host interface of the macvlan driver')
    .option('--node <name>', "this node's name (default: hostname)")
    .option('--underlay <addr>', "this host's underlay address (default: the address on the default route)")
    .option('--plugin-entry <file>', 'plugin program the launcher runs (default: bin/meshwork-cni of this installation)')
    .option('--package-root <dir>', 'meshwork installation the launcher and unit point at, as seen from the host (default: this one)')
    .option('--node-binary <file>', 'Node.js the launcher and unit run, as seen from the host (default: this one)')
    .option('--no-systemd', 'write no agent unit or agent.env (the agent runs elsewhere, e.g. as a DaemonSet container)')
    .action((f: Flags) => {
      const o = optionsFromFlags(f);
      const files = planInstall(o);
      if (f.dryRun) { process.stdout.write(renderDryRun(o.prefix, files)); return; }
      const entry = o.pluginEntry ?? path.join(o.packageRoot, 'bin', 'meshwork-cni');
      if (!fs.existsSync(entry)) throw new InstallError(`plugin program ${entry} not found: build meshwork first (npm run build) or pass --plugin-entry`);
      const r = applyInstall(o.prefix, files, o.force);
      for (const p of r.written) process.stdout.write(`wrote ${p}\n`);
      for (const p of r.unchanged) process.stdout.write(`unchanged ${p}\n`);
      for (const p of r.removed) process.stdout.write(`removed ${p} (no longer part of the install)\n`);
      if (!o.underlay) process.stdout.write('note: no underlay address found; set MESHWORK_UNDERLAY in /etc/meshwork/agent.env\n');
      if (o.prefix === '/') process.stdout.write('next: systemctl daemon-reload && systemctl enable --now meshwork-agent\n');
    });

  commonOptions(program.command('uninstall').description('remove exactly what `meshwork install` wrote (from its manifest)'))
    .action((f: Flags) => {
      const r = applyUninstall(path.resolve(f.prefix), !!f.force, !!f.dryRun);
      const verb = f.dryRun ? 'would remove' : 'removed';
      for (const p of r.removed) process.stdout.write(`${verb} ${p}\n`);
      for (const p of r.missing) process.stdout.write(`already gone ${p}\n`);
      for (const k of r.kept) process.stdout.write(`kept ${k.path}: ${k.why}\n`);
    });
}
