import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openStore, parseStoreSpec, DEFAULT_STORE_SPEC } from '../../store/open';
import { freePort } from '../helpers/etcd';

test('store specs parse to a backend and its parameters', () => {
  const cases: Array<[string, unknown]> = [
    ['memory:', { kind: 'memory' }],
    [DEFAULT_STORE_SPEC, { kind: 'file', dir: '/var/lib/meshwork' }],
    ['file:///var/lib/mw', { kind: 'file', dir: '/var/lib/mw' }],
    ['file:/a/b/../c', { kind: 'file', dir: '/a/c' }],
    ['/srv/meshwork', { kind: 'file', dir: '/srv/meshwork' }],
    ['./state', { kind: 'file', dir: path.resolve('state') }],
    ['etcd:http://10.0.0.1:2379', { kind: 'etcd', endpoints: ['http://10.0.0.1:2379'] }],
    ['etcd:http://a:2379, https://b:2379,http://c', { kind: 'etcd', endpoints: ['http://a:2379', 'https://b:2379', 'http://c:80'] }],
    ['etcd:http://[fd00::1]:2379', { kind: 'etcd', endpoints: ['http://[fd00::1]:2379'] }],
  ];
  for (const [spec, want] of cases) assert.deepEqual(parseStoreSpec(spec), want, spec);
});

test('bad store specs are refused with a message naming the spec and the problem', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['etcd:', /no etcd endpoints/],
    ['etcd:a:2379', /must use http/],
    ['etcd:localhost', /must use http|not a URL/],
    ['etcd:ftp://a:21', /must use http/],
    ['etcd:http://a:2379/v3', /must not have a path/],
    ['file:', /missing directory/],
    ['file://host/path', /must be local/],
    ['consul:http://a:8500', /unknown store kind "consul"/],
  ];
  for (const [spec, why] of cases) {
    assert.throws(() => parseStoreSpec(spec), (e: any) => e.code === 'ESTORE_SPEC' && e.message.includes(JSON.stringify(spec)) && why.test(e.message), spec);
  }
  // Credentials in a URL were silently dropped; now refused, and the password never shown.
  assert.throws(() => parseStoreSpec('etcd:http://a:2379,http://root:s3cret@b:2379'), (e: any) => e.code === 'ESTORE_SPEC'
    && /endpoint "http:\/\/root:\*\*\*@b:2379" has credentials: etcd authentication is not supported/.test(e.message) && !e.message.includes('s3cret'));
});

test('openStore opens each backend kind from its spec', async () => {
  const mem = await openStore('memory:');
  await mem.put('/k', 'v');
  assert.equal((await mem.get('/k'))!.value, 'v');
  await mem.close();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-open-'));
  try {
    const file = await openStore(`file:${dir}/sub`);
    await file.put('/k', 'v');
    await file.close();
    const again = await openStore(`${dir}/sub`);
    assert.equal((await again.get('/k'))!.value, 'v', 'a bare path is the same file store');
    await again.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('openStore fails fast, naming the endpoints, when no etcd member is reachable', async () => {
  const port = await freePort(); // free a moment ago: nothing listens there
  const spec = `etcd:http://127.0.0.1:${port}`;
  await assert.rejects(openStore(spec, { etcd: { callTimeoutMs: 1500 } }), (e: any) => e.code === 'ESTORE_UNAVAILABLE' && e.message.includes(`http://127.0.0.1:${port}`) && /no member reachable/.test(e.message));
});

test('a file store directory that cannot be used is a clear error', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-open-'));
  try {
    fs.writeFileSync(path.join(dir, 'file'), 'not a dir');
    await assert.rejects(openStore(`file:${dir}/file/store`), (e: any) => e.code === 'ESTORE_UNAVAILABLE' && e.message.includes(`${dir}/file/store`));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
