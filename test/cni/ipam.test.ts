import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run, repoRoot } from '../helpers/lab';
import { createIpam, type IpamContext } from '../../cni/ipam';
import { createFileStore } from '../../cni/ipam/file-store';
import { createMemoryStore } from '../../cni/ipam/store';
import { MeshworkError } from '../../lib/errors';

const IPAM_JS = path.join(repoRoot, 'dist', 'cni', 'ipam', 'index.js');

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'mw-ipam-'));
}

function netconf(dataDir: string, ranges: unknown, extra: Record<string, unknown> = {}) {
  return { cniVersion: '1.0.0', name: 'ipamnet', type: 'meshwork-cni', ipam: { type: 'meshwork', dataDir, ranges, routes: [{ dst: '0.0.0.0/0' }] }, ...extra };
}

function ctx(conf: Record<string, unknown>, containerId: string, ifname = 'eth0', env: Record<string, string> = {}): IpamContext {
  return { netconf: conf, rawStdin: Buffer.from(JSON.stringify(conf)), env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_IFNAME: ifname, ...env }, containerId, ifname };
}

async function rejectsWithCode(p: Promise<unknown>, code: string, msg: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof MeshworkError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, msg);
    return true;
  });
}

/** A child process that runs one IPAM call like a one-shot plugin would. */
const CHILD = `
const ipam = require(${JSON.stringify(IPAM_JS)});
const [op, confJson, id] = process.argv.slice(1);
const conf = JSON.parse(confJson);
const ctx = { netconf: conf, rawStdin: Buffer.from(confJson), env: {}, containerId: id, ifname: 'eth0' };
(op === 'add' ? ipam.ipamAdd(ctx) : ipam.ipamDel(ctx)).then(
  (r) => { process.stdout.write(JSON.stringify(r ?? null)); if (process.env.DIE_AFTER) process.kill(process.pid, 'SIGKILL'); },
  (e) => { process.stdout.write(JSON.stringify({ code: e.code, msg: e.message })); process.exitCode = 1; });
`;

test('dual stack: one address per range set, routes, idempotent per key', async () => {
  const dir = tmpDir();
  try {
    const ipam = createIpam();
    const conf = netconf(dir, [[{ subnet: '10.77.0.0/24' }], [{ subnet: 'fd77::/64' }]]);
    const a = await ipam.add(ctx(conf, 'c1'));
    assert.deepEqual(a.ips, [{ address: '10.77.0.2/24', gateway: '10.77.0.1' }, { address: 'fd77::2/64', gateway: 'fd77::1' }]);
    assert.deepEqual(a.routes, [{ dst: '0.0.0.0/0' }]);
    assert.deepEqual((await ipam.add(ctx(conf, 'c1'))).ips, a.ips, 'ADD twice for one key gives the same addresses');
    const b = await ipam.add(ctx(conf, 'c1', 'net1'));
    assert.deepEqual(b.ips.map((i) => i.address), ['10.77.0.3/24', 'fd77::3/64'], 'another interface is another key');
    await ipam.check(ctx({ ...conf, prevResult: { ips: a.ips } }, 'c1'));
    await rejectsWithCode(ipam.check(ctx({ ...conf, prevResult: { ips: [{ address: '10.77.0.9/24' }] } }, 'c1')), '3', /prevResult address 10\.77\.0\.9\/24 is not allocated/);
    await rejectsWithCode(ipam.check(ctx(conf, 'nobody')), '3', /no address is allocated to container nobody/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('static IP from runtimeConfig.ips and args.cni.ips; a taken one is refused with code 11', async () => {
  const dir = tmpDir();
  try {
    const ipam = createIpam();
    const ranges = [[{ subnet: '10.78.0.0/24' }], [{ subnet: 'fd78::/64' }]];
    const s1 = await ipam.add(ctx(netconf(dir, ranges, { runtimeConfig: { ips: ['10.78.0.50/24'] } }), 's1'));
    assert.deepEqual(s1.ips.map((i) => i.address), ['10.78.0.50/24', 'fd78::2/64']);
    const s2 = await ipam.add(ctx(netconf(dir, ranges, { args: { cni: { ips: ['fd78::77'] } } }), 's2'));
    assert.deepEqual(s2.ips.map((i) => i.address), ['10.78.0.2/24', 'fd78::77/64']);
    await rejectsWithCode(ipam.add(ctx(netconf(dir, ranges, { runtimeConfig: { ips: ['10.78.0.50'] } }), 's3')),
      '11', /^runtimeConfig\.ips\[0\]: 10\.78\.0\.50 is already allocated to container s1 interface eth0$/);
    await rejectsWithCode(ipam.add(ctx(netconf(dir, ranges, { runtimeConfig: { ips: ['10.99.0.1'] } }), 's3')),
      '7', /^runtimeConfig\.ips\[0\]: 10\.99\.0\.1 is not inside any range/);
    await rejectsWithCode(ipam.add(ctx(netconf(dir, ranges, { runtimeConfig: { ips: ['10.78.0.1'] } }), 's3')),
      '7', /gateway/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('exhaustion is an immediate code-11 error and changes nothing', async () => {
  const dir = tmpDir();
  try {
    const ipam = createIpam();
    const conf = netconf(dir, [[{ subnet: '10.79.0.0/24', rangeStart: '10.79.0.10', rangeEnd: '10.79.0.12' }]]);
    for (const id of ['e1', 'e2', 'e3']) await ipam.add(ctx(conf, id));
    const before = fs.readFileSync(path.join(dir, 'ipamnet', 'state.json'), 'utf8');
    await rejectsWithCode(ipam.add(ctx(conf, 'e4')), '11', /network ipamnet: no free address in ipam\.ranges\[0\] \(10\.79\.0\.10-10\.79\.0\.12\)/);
    assert.equal(fs.readFileSync(path.join(dir, 'ipamnet', 'state.json'), 'utf8'), before);
    await ipam.del(ctx(conf, 'e2'));
    assert.deepEqual((await ipam.add(ctx(conf, 'e4'))).ips.map((i) => i.address), ['10.79.0.11/24'], 'a freed address is reused');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('in-process: 50 concurrent ADDs give 50 distinct addresses; DEL all (twice) leaves none', async () => {
  const dir = tmpDir();
  try {
    const ipam = createIpam();
    const conf = netconf(dir, [[{ subnet: '10.80.0.0/24' }], [{ subnet: 'fd80::/64' }]]);
    const ids = Array.from({ length: 50 }, (_, i) => `p${i}`);
    const results = await Promise.all(ids.map((id) => ipam.add(ctx(conf, id))));
    const v4 = new Set(results.map((r) => r.ips[0].address));
    const v6 = new Set(results.map((r) => r.ips[1].address));
    assert.equal(v4.size, 50);
    assert.equal(v6.size, 50);
    const store = createFileStore({ dataDir: dir });
    assert.equal((await store.read('ipamnet')).allocations.length, 50);
    await Promise.all(ids.map((id) => ipam.del(ctx(conf, id))));
    await Promise.all(ids.map((id) => ipam.del(ctx(conf, id))));
    assert.deepEqual((await store.read('ipamnet')).allocations, []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('50 concurrent plugin processes get 50 distinct addresses', async () => {
  const dir = tmpDir();
  try {
    const conf = JSON.stringify(netconf(dir, [[{ subnet: '10.81.0.0/24' }]]));
    const outs = await Promise.all(Array.from({ length: 50 }, (_, i) => run(process.execPath, ['-e', CHILD, 'add', conf, `proc${i}`], { timeoutMs: 120_000 })));
    for (const o of outs) assert.equal(o.code, 0, o.stdout + o.stderr);
    const addrs = outs.map((o) => (JSON.parse(o.stdout) as { ips: Array<{ address: string }> }).ips[0].address);
    assert.equal(new Set(addrs).size, 50, addrs.join(' '));
    const state = await createFileStore({ dataDir: dir }).read('ipamnet');
    assert.equal(state.allocations.length, 50);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'ipamnet')).sort(), ['state.json'], 'no lock or temp file left');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('GC frees what a killed plugin left; a lock left by a killed process is taken over', async () => {
  const dir = tmpDir();
  try {
    const confObj = netconf(dir, [[{ subnet: '10.82.0.0/24' }]]);
    const conf = JSON.stringify(confObj);
    // A plugin that allocated and was killed before the runtime recorded the attachment.
    const killed = await run(process.execPath, ['-e', CHILD, 'add', conf, 'orphan'], { env: { ...process.env, DIE_AFTER: '1' } });
    assert.notEqual(killed.code, 0);
    // A plugin killed while it held the store lock.
    const holder = `
      const { createFileStore } = require(${JSON.stringify(path.join(repoRoot, 'dist', 'cni', 'ipam', 'file-store.js'))});
      createFileStore({ dataDir: ${JSON.stringify(dir)} }).update('ipamnet', () => { process.kill(process.pid, 'SIGKILL'); return { value: 0 }; });`;
    const h = await run(process.execPath, ['-e', holder]);
    assert.notEqual(h.code, 0);
    assert.ok(fs.existsSync(path.join(dir, 'ipamnet', 'lock')), 'the killed holder left its lock');

    const ipam = createIpam();
    const live = await ipam.add(ctx(confObj, 'live'));
    assert.equal(live.ips[0].address, '10.82.0.3/24', 'the orphan still holds .2 until GC');
    await ipam.gc({ netconf: confObj, rawStdin: Buffer.from(conf), env: {}, validAttachments: [{ containerID: 'live', ifname: 'eth0' }] });
    const state = await createFileStore({ dataDir: dir }).read('ipamnet');
    assert.deepEqual(state.allocations.map((a) => a.containerID), ['live']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('memory store runs the same allocation rules', async () => {
  const ipam = createIpam({ storeFor: (() => { const s = createMemoryStore(); return () => s; })() });
  const conf = netconf('/nonexistent', [[{ subnet: '10.83.0.0/30' }]]);
  assert.equal((await ipam.add(ctx(conf, 'm1'))).ips[0].address, '10.83.0.2/30');
  await rejectsWithCode(ipam.add(ctx(conf, 'm2')), '11', /no free address/);
  assert.ok(!fs.existsSync('/nonexistent'));
});

test('a corrupt state file is an I/O error (code 5), not a silent reset', async () => {
  const dir = tmpDir();
  try {
    fs.mkdirSync(path.join(dir, 'ipamnet'));
    fs.writeFileSync(path.join(dir, 'ipamnet', 'state.json'), '{"allocations": 7');
    await rejectsWithCode(createIpam().add(ctx(netconf(dir, [[{ subnet: '10.84.0.0/24' }]]), 'x')), '5', /state\.json: not a meshwork IPAM state document/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
