/** apply/delete against the in-memory store: actions, cluster IPs, all-or-nothing, references. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryStore, type MemoryStore } from '../../store/memory';
import { keys } from '../../store/keys';
import { applyPolicies, deletePolicies } from '../../policies/apply';
import { PolicyConflictError, PolicyNotFoundError, PolicyValidationError, formatIssue } from '../../policies/errors';
import type { Service } from '../../policies/model';
import { decodeStored } from '../../policies/stored';
import { policy, SERVICE, withService } from './util';

const src = (text: string, file = 'a.yaml') => [{ file, text }];
const svcNamed = (name: string, extra = '') => SERVICE.replace('name: reviews', `name: ${name}`).replace('spec:\n', `spec:\n${extra}`);

async function withStore(fn: (s: MemoryStore) => Promise<void>): Promise<void> {
  const s = createMemoryStore();
  try { await fn(s); } finally { await s.close(); }
}

async function storedService(s: MemoryStore, name: string): Promise<Service> {
  const kv = await s.get(keys.policy('Service', 'default', name));
  assert.ok(kv, `service ${name} stored`);
  return decodeStored(kv.key, kv.value) as Service;
}

test('apply reports created, unchanged and configured, and writes once', () => withStore(async (s) => {
  const text = withService(policy('  timeout: 1s\n'));
  const r1 = await applyPolicies(s, src(text));
  assert.deepEqual(r1.entries.map((e) => `${e.kind}/${e.name} ${e.action}`), ['Service/reviews created', 'TrafficPolicy/reviews created']);
  assert.ok(r1.applied);
  const rev = s.revision();
  const r2 = await applyPolicies(s, src(text));
  assert.deepEqual(r2.entries.map((e) => e.action), ['unchanged', 'unchanged']);
  assert.equal(s.revision(), rev, 'nothing written when unchanged');
  const r3 = await applyPolicies(s, src(withService(policy('  timeout: 2s\n'))));
  assert.deepEqual(r3.entries.map((e) => e.action), ['unchanged', 'configured']);
  assert.equal(s.revision(), rev + 1, 'one transaction, one revision');
}));

test('a cluster IP is allocated, reserved, and kept on re-apply', () => withStore(async (s) => {
  await applyPolicies(s, src(SERVICE), { serviceCidr: '10.100.0.0/24' });
  const svc = await storedService(s, 'reviews');
  const ip = svc.spec.clusterIP!;
  assert.match(ip, /^10\.100\.0\.\d+$/);
  assert.equal((await s.get(keys.clusterIp(ip)))?.value, 'default/reviews');
  const again = await applyPolicies(s, src(SERVICE), { serviceCidr: '10.100.0.0/24' });
  assert.equal(again.entries[0].action, 'unchanged');
  assert.equal((await storedService(s, 'reviews')).spec.clusterIP, ip);
  // Explicitly the same address: also unchanged.
  const explicit = await applyPolicies(s, src(svcNamed('reviews', `  clusterIP: ${ip}\n`)), { serviceCidr: '10.100.0.0/24' });
  assert.equal(explicit.entries[0].action, 'unchanged');
}));

test('allocation skips addresses taken in the store and in the same set', () => withStore(async (s) => {
  const cidr = { serviceCidr: '10.100.0.0/30' }; // two usable addresses
  await applyPolicies(s, src(svcNamed('a', '  clusterIP: 10.100.0.1\n')), cidr);
  const r = await applyPolicies(s, src(svcNamed('b')), cidr);
  assert.equal(r.entries[0].after.kind === 'Service' && r.entries[0].after.spec.clusterIP, '10.100.0.2');
  await assert.rejects(applyPolicies(s, src(svcNamed('c')), cidr), (e: unknown) => e instanceof PolicyValidationError && /no free cluster IP left in 10.100.0.0\/30/.test(e.message));
}));

test('explicit cluster IPs: conflicts, range and immutability are errors naming the field', () => withStore(async (s) => {
  await applyPolicies(s, src(svcNamed('a', '  clusterIP: 10.96.0.10\n')));
  const cases: Array<[string, RegExp]> = [
    [svcNamed('b', '  clusterIP: 10.96.0.10\n'), /b.yaml:6:14: spec.clusterIP: cluster IP 10.96.0.10 is already allocated to service default\/a/],
    [svcNamed('b', '  clusterIP: 192.168.0.10\n'), /b.yaml:6:14: spec.clusterIP: cluster IP 192.168.0.10 is outside the service CIDR 10.96.0.0\/16/],
    [svcNamed('a', '  clusterIP: 10.96.0.11\n'), /b.yaml:6:14: spec.clusterIP: clusterIP cannot change from 10.96.0.10 to 10.96.0.11/],
    [svcNamed('a', '  clusterIP: None\n'), /clusterIP cannot change from 10.96.0.10 to None/],
  ];
  for (const [text, want] of cases) {
    const before = s.revision();
    await assert.rejects(applyPolicies(s, src(text, 'b.yaml')), (e: unknown) => e instanceof PolicyValidationError && want.test(e.message), String(want));
    assert.equal(s.revision(), before);
  }
}));

test('headless and ExternalName services reserve nothing; a change to ExternalName frees the IP', () => withStore(async (s) => {
  await applyPolicies(s, src(svcNamed('h', '  clusterIP: None\n')));
  assert.equal((await storedService(s, 'h')).spec.clusterIP, 'None');
  await applyPolicies(s, src(svcNamed('x')));
  const ip = (await storedService(s, 'x')).spec.clusterIP!;
  await applyPolicies(s, src('apiVersion: meshwork.dev/v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ExternalName, externalName: x.example.com}\n'));
  assert.equal(await s.get(keys.clusterIp(ip)), undefined);
  assert.deepEqual((await s.list(keys.clusterIps())).items, []);
}));

test('apply is all-or-nothing: one bad document writes nothing', () => withStore(async (s) => {
  const before = s.revision();
  const good = svcNamed('good');
  const bad = policy('  timeout: -1s\n');
  await assert.rejects(applyPolicies(s, [{ file: 'good.yaml', text: good }, { file: 'bad.yaml', text: withService(bad) }]), (e: unknown) => {
    assert.ok(e instanceof PolicyValidationError);
    assert.deepEqual(e.issues.map(formatIssue), ['bad.yaml:18:12: spec.timeout: duration "-1s" is negative; durations must be greater than zero']);
    return true;
  });
  assert.equal(s.revision(), before);
  assert.deepEqual((await s.list('/meshwork/')).items, []);
}));

test('dry run plans without writing', () => withStore(async (s) => {
  const before = s.revision();
  const r = await applyPolicies(s, src(withService(policy(''))), { dryRun: true });
  assert.deepEqual(r.entries.map((e) => e.action), ['created', 'created']);
  assert.equal(r.applied, false);
  assert.equal(s.revision(), before);
  assert.deepEqual((await s.list('/meshwork/')).items, []);
}));

test('a policy may refer to a service already in the store', () => withStore(async (s) => {
  await assert.rejects(applyPolicies(s, src(policy(''))), /service `reviews` in namespace `default` is neither in this apply set nor in the store/);
  await applyPolicies(s, src(SERVICE));
  const r = await applyPolicies(s, src(policy('')));
  assert.equal(r.entries[0].action, 'created');
}));

test('delete frees the cluster IP, refuses dangling policies, reports missing documents', () => withStore(async (s) => {
  await applyPolicies(s, src(withService(policy(''))));
  const ip = (await storedService(s, 'reviews')).spec.clusterIP!;
  await assert.rejects(deletePolicies(s, [{ kind: 'Service', namespace: 'default', name: 'reviews' }]), (e: unknown) => e instanceof PolicyConflictError && /governed by TrafficPolicy reviews/.test(e.message));
  await assert.rejects(deletePolicies(s, [{ kind: 'Service', namespace: 'default', name: 'nope' }]), PolicyNotFoundError);
  const r = await deletePolicies(s, [{ kind: 'Service', namespace: 'default', name: 'reviews' }, { kind: 'TrafficPolicy', namespace: 'default', name: 'reviews' }]);
  assert.equal(r.deleted.length, 2);
  assert.equal(await s.get(keys.clusterIp(ip)), undefined);
  assert.deepEqual((await s.list('/meshwork/')).items, []);
  const again = await deletePolicies(s, [{ kind: 'Service', namespace: 'default', name: 'reviews' }], { ignoreNotFound: true });
  assert.equal(again.notFound.length, 1);
}));

test('concurrent applies of different services get different addresses', () => withStore(async (s) => {
  const cidr = { serviceCidr: '10.100.0.0/29' };
  await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => applyPolicies(s, src(svcNamed(n)), cidr)));
  const ips = (await s.list(keys.clusterIps())).items;
  assert.equal(ips.length, 5);
  assert.equal(new Set(ips.map((kv) => kv.value)).size, 5);
  for (const kv of ips) {
    const svc = await storedService(s, kv.value.split('/')[1]);
    assert.equal(keys.clusterIp(svc.spec.clusterIP!), kv.key);
  }
}));

test('re-applying restores a lost cluster IP reservation', () => withStore(async (s) => {
  await applyPolicies(s, src(SERVICE));
  const ip = (await storedService(s, 'reviews')).spec.clusterIP!;
  await s.delete(keys.clusterIp(ip));
  const r = await applyPolicies(s, src(SERVICE));
  assert.equal(r.entries[0].action, 'unchanged');
  assert.ok(r.applied);
  assert.equal(r.revision, s.revision());
  assert.equal((await s.get(keys.clusterIp(ip)))?.value, 'default/reviews');
}));
