import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Lab, NEEDS_ROOT, eventually, isRoot, repoRoot, run } from '../helpers/lab';
import { createCniDaemon, decodeRequest, encodeRequest, encodeResponse, decodeResponse, type CniHandler } from '../../cni/daemon';
import { createIpam } from '../../cni/ipam';
import { loadNative } from '../../lib/netns';

const SHIM = path.join(repoRoot, 'build', 'Release', 'meshwork-cni-shim');
const SKIP_SHIM = !fs.existsSync(SHIM) && 'meshwork-cni-shim not built (npm run build)';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'mw-fast-'));
}

/** A stand-in for dist/cni/main.js: reports what it was started with. */
const FAKE_MAIN = `
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('CNI_')));
  process.stdout.write(JSON.stringify({ via: 'standalone', argv: process.argv.slice(2), env, stdin: input }));
  process.exitCode = 7;
});`;

function shimEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, MESHWORK_CNI_DEBUG: '1', CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'ctr1', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni', UNRELATED: 'secret', ...extra };
}

test('wire format round-trips requests and responses', () => {
  const req = { env: { CNI_COMMAND: 'DEL', CNI_ARGS: 'A=1;B=2' }, stdin: Buffer.from('{"x":1}') };
  const frame = encodeRequest(req);
  assert.equal(decodeRequest(frame.subarray(0, frame.length - 1)), undefined, 'partial frame waits');
  assert.deepEqual(decodeRequest(frame), req);
  assert.throws(() => decodeRequest(Buffer.from('HTTP/1.1 GET')), /bad request magic/);
  const res = decodeResponse(encodeResponse({ exitCode: 3, stdout: 'out', stderr: Buffer.from('err') }));
  assert.deepEqual(res, { exitCode: 3, stdout: Buffer.from('out'), stderr: Buffer.from('err') });
});

test('shim with daemon: env, stdin, stdout, stderr and exit code pass through', { skip: SKIP_SHIM }, async () => {
  const dir = tmpDir();
  const seen: Array<{ env: Record<string, string | undefined>; stdin: string }> = [];
  const handle: CniHandler = async (req) => {
    seen.push({ env: req.env, stdin: req.stdin.toString() });
    return { exitCode: 3, stdout: `{"echo":${JSON.stringify(req.stdin.length)}}`, stderr: 'from daemon' };
  };
  const socket = path.join(dir, 'cni.sock');
  const daemon = createCniDaemon({ socketPath: socket, handle, netnsGuard: false });
  try {
    await daemon.start();
    assert.equal(fs.statSync(socket).mode & 0o777, 0o600, 'socket is root-only');
    const big = JSON.stringify({ cniVersion: '1.0.0', name: 'n', pad: 'x'.repeat(200_000) });
    const r = await run(SHIM, [], { input: big, env: shimEnv({ MESHWORK_CNI_SOCKET: socket, MESHWORK_CNI_MAIN: '/nonexistent' }) });
    assert.equal(r.code, 3);
    assert.equal(r.stdout, `{"echo":${Buffer.byteLength(big)}}`);
    assert.equal(r.stderr, 'from daemon');
    assert.equal(seen.length, 1);
    assert.equal(seen[0].stdin, big);
    assert.equal(seen[0].env.CNI_CONTAINERID, 'ctr1');
    assert.equal(seen[0].env.MESHWORK_CNI_SOCKET, socket);
    assert.equal(seen[0].env.UNRELATED, undefined, 'only CNI_* and MESHWORK_* are forwarded');
    assert.equal(seen[0].env.PATH, undefined);
    assert.deepEqual(daemon.stats(), { served: 1, failed: 0, inFlight: 0, netnsRestored: 0, foreignNetns: 0 });
  } finally {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(!fs.existsSync(socket), 'stop removes the socket');
});

test('shim without daemon: falls back to the standalone plugin with the same stdin, env and args', { skip: SKIP_SHIM }, async () => {
  const dir = tmpDir();
  try {
    const main = path.join(dir, 'main.js');
    fs.writeFileSync(main, FAKE_MAIN);
    const env = shimEnv({ MESHWORK_CNI_SOCKET: path.join(dir, 'absent.sock'), MESHWORK_CNI_MAIN: main, MESHWORK_NODE: process.execPath });
    const r = await run(SHIM, ['extra-arg'], { input: '{"cniVersion":"1.0.0"}', env });
    assert.equal(r.code, 7, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.via, 'standalone');
    assert.deepEqual(out.argv, ['extra-arg']);
    assert.equal(out.stdin, '{"cniVersion":"1.0.0"}');
    assert.equal(out.env.CNI_CONTAINERID, 'ctr1');

    // A daemon that accepts and dies before answering: the call is replayed standalone.
    const socket = path.join(dir, 'mute.sock');
    const mute = net.createServer((s) => s.once('data', () => s.destroy()));
    await new Promise<void>((r2) => mute.listen(socket, r2));
    try {
      const r2 = await run(SHIM, [], { input: '{"replayed":true}', env: { ...env, MESHWORK_CNI_SOCKET: socket } });
      assert.equal(r2.code, 7, r2.stderr);
      assert.equal(JSON.parse(r2.stdout).stdin, '{"replayed":true}');
    } finally {
      await new Promise<void>((r3) => mute.close(() => r3()));
    }

    // Neither daemon nor node: still the spec's error JSON, not a crash.
    const r3 = await run(SHIM, [], { input: '{}', env: { ...env, PATH: '/nonexistent', MESHWORK_NODE: '/nonexistent/node', MESHWORK_CNI_MAIN: main } });
    if (!fs.existsSync('/usr/local/bin/node') && !fs.existsSync('/usr/bin/node')) {
      assert.equal(r3.code, 1);
      assert.equal(JSON.parse(r3.stdout).code, 100);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a shim in another network namespace is declined by the daemon and runs the plugin standalone', { skip: (!isRoot && NEEDS_ROOT) || SKIP_SHIM }, async () => {
  const lab = new Lab();
  const dir = tmpDir();
  const handled: string[] = [];
  const daemon = createCniDaemon({ socketPath: path.join(dir, 'cni.sock'), handle: async (req) => { handled.push(String(req.env.CNI_CONTAINERID)); return { exitCode: 0, stdout: '{"via":"daemon"}', stderr: '' }; }, netnsGuard: false });
  try {
    await daemon.start();
    const main = path.join(dir, 'main.js');
    fs.writeFileSync(main, FAKE_MAIN);
    const env = shimEnv({ MESHWORK_CNI_SOCKET: path.join(dir, 'cni.sock'), MESHWORK_CNI_MAIN: main, MESHWORK_NODE: process.execPath });
    // Same namespace as the daemon: served by it.
    const here = await run(SHIM, [], { input: '{}', env });
    assert.equal(JSON.parse(here.stdout).via, 'daemon');
    // Another host's namespace sharing the socket path: never wired by this daemon.
    const other = lab.netns('other');
    const there = await run('ip', ['netns', 'exec', other.name, SHIM], { input: '{}', env });
    assert.equal(there.code, 7, there.stderr);
    assert.equal(JSON.parse(there.stdout).via, 'standalone');
    assert.deepEqual(handled, ['ctr1']);
    assert.equal(daemon.stats().foreignNetns, 1);
  } finally {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    await lab.cleanup();
  }
});

test('daemon: 50 concurrent shim calls allocate 50 distinct addresses in one process', { skip: SKIP_SHIM }, async () => {
  const dir = tmpDir();
  const ipam = createIpam();
  // A handler doing the IPAM part of ADD, concurrently, in the daemon's process.
  const handle: CniHandler = async (req) => {
    const conf = JSON.parse(req.stdin.toString()) as Record<string, unknown>;
    const id = req.env.CNI_CONTAINERID!;
    try {
      const res = await ipam.add({ netconf: conf, rawStdin: req.stdin, env: req.env, containerId: id, ifname: req.env.CNI_IFNAME ?? 'eth0' });
      return { exitCode: 0, stdout: JSON.stringify(res), stderr: '' };
    } catch (err) {
      return { exitCode: 1, stdout: JSON.stringify({ code: Number((err as { code: string }).code), msg: (err as Error).message }), stderr: '' };
    }
  };
  const socket = path.join(dir, 'cni.sock');
  const daemon = createCniDaemon({ socketPath: socket, handle, netnsGuard: false });
  try {
    await daemon.start();
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'fastnet', type: 'meshwork-cni', ipam: { type: 'meshwork', dataDir: path.join(dir, 'ipam'), ranges: [[{ subnet: '10.85.0.0/24' }], [{ subnet: 'fd85::/64' }]] } });
    const outs = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      run(SHIM, [], { input: conf, env: shimEnv({ MESHWORK_CNI_SOCKET: socket, CNI_CONTAINERID: `c${i}`, MESHWORK_CNI_MAIN: '/nonexistent' }) })));
    for (const o of outs) assert.equal(o.code, 0, o.stdout + o.stderr);
    const v4 = new Set(outs.map((o) => JSON.parse(o.stdout).ips[0].address));
    const v6 = new Set(outs.map((o) => JSON.parse(o.stdout).ips[1].address));
    assert.equal(v4.size, 50);
    assert.equal(v6.size, 50);
    assert.equal(daemon.stats().served, 50);
  } finally {
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('daemon moves its thread home if a request left it in another namespace', { skip: (!isRoot && NEEDS_ROOT) || SKIP_SHIM }, async () => {
  const lab = new Lab('mwf');
  const dir = tmpDir();
  try {
    const pod = lab.netns('pod');
    const home = fs.readlinkSync('/proc/thread-self/ns/net');
    // A deliberately buggy handler: switches the main thread and returns.
    const handle: CniHandler = async () => {
      const n = loadNative();
      const fd = fs.openSync(pod.path, 'r');
      try { n.setns(fd, n.CLONE_NEWNET); } finally { fs.closeSync(fd); }
      return { exitCode: 0, stdout: '{}', stderr: '' };
    };
    const socket = path.join(dir, 'cni.sock');
    const daemon = createCniDaemon({ socketPath: socket, handle, logger: { info: () => {}, error: () => {} } });
    await daemon.start();
    try {
      const r = await run(SHIM, [], { input: '{}', env: shimEnv({ MESHWORK_CNI_SOCKET: socket }) });
      assert.equal(r.code, 0);
      assert.equal(fs.readlinkSync('/proc/thread-self/ns/net'), home, 'thread is back home');
      assert.equal(daemon.stats().netnsRestored, 1);
    } finally {
      await daemon.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    await lab.cleanup();
  }
});

test('a second daemon on a live socket refuses to start; a stale socket is replaced', { skip: SKIP_SHIM }, async () => {
  const dir = tmpDir();
  const socket = path.join(dir, 'cni.sock');
  const handle: CniHandler = async () => ({ exitCode: 0, stdout: '{"n":1}', stderr: '' });
  const a = createCniDaemon({ socketPath: socket, handle, netnsGuard: false });
  const b = createCniDaemon({ socketPath: socket, handle, netnsGuard: false });
  try {
    await a.start();
    await assert.rejects(b.start(), /another daemon already listens/);
    // A socket file nobody listens on (a daemon that was killed).
    await a.stop();
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(socket, r));
    await new Promise<void>((r) => dead.close(() => r()));
    fs.writeFileSync(socket, ''); // leftover path with no listener
    await b.start();
    await eventually(async () => (await run(SHIM, [], { input: '{}', env: shimEnv({ MESHWORK_CNI_SOCKET: socket }) })).stdout === '{"n":1}', 5000, 'shim reaches the new daemon');
  } finally {
    await a.stop();
    await b.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
