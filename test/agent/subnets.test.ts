import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryStore } from '../../store/memory';
import { keys } from '../../store/keys';
import { claimSubnet, SubnetsExhaustedError } from '../../agent/subnets';
import { parseNet } from '../../agent/subnet-math';

test('concurrent claims never hand one subnet to two nodes', async () => {
  const store = createMemoryStore();
  try {
    const cluster = parseNet('10.50.0.0/20'); // 16 subnets of /24, 12 nodes racing
    const nodes = Array.from({ length: 12 }, (_, i) => `node-${i}`);
    const leases = await Promise.all(nodes.map(() => store.grantLease(30)));
    const got = await Promise.all(nodes.map((node, i) => claimSubnet({ store, network: 'mesh', cluster, subnetLen: 24, node, leaseId: leases[i].id })));
    assert.equal(new Set(got).size, nodes.length, `duplicates in ${got}`);
    const listed = await store.list(keys.subnets('mesh'));
    assert.equal(listed.items.length, nodes.length);
    for (const kv of listed.items) assert.ok(kv.lease, 'subnet leases are attached to the node lease');
  } finally {
    await store.close();
  }
});

test('a node that comes back gets its remembered subnet; a taken one is not stolen', async () => {
  const store = createMemoryStore();
  try {
    const cluster = parseNet('10.50.0.0/16');
    const l1 = await store.grantLease(30);
    const first = await claimSubnet({ store, network: 'mesh', cluster, subnetLen: 24, node: 'a', leaseId: l1.id });
    await l1.revoke(); // a is gone; its subnet is free again
    const l2 = await store.grantLease(30);
    assert.equal(await claimSubnet({ store, network: 'mesh', cluster, subnetLen: 24, node: 'a', leaseId: l2.id, remembered: [first] }), first);
    // Same node again while its key is still alive (quick restart): re-attached to the new lease.
    const l3 = await store.grantLease(30);
    assert.equal(await claimSubnet({ store, network: 'mesh', cluster, subnetLen: 24, node: 'a', leaseId: l3.id }), first);
    assert.equal((await store.get(keys.subnet('mesh', first)))?.lease, l3.id);
    // b remembers a's subnet (stale state): it must get another one.
    const lb = await store.grantLease(30);
    const b = await claimSubnet({ store, network: 'mesh', cluster, subnetLen: 24, node: 'b', leaseId: lb.id, remembered: [first] });
    assert.notEqual(b, first);
  } finally {
    await store.close();
  }
});

test('an exhausted cluster CIDR is a clear error', async () => {
  const store = createMemoryStore();
  try {
    const cluster = parseNet('10.60.0.0/23');
    const l = await store.grantLease(30);
    await claimSubnet({ store, network: 'm', cluster, subnetLen: 24, node: 'a', leaseId: l.id });
    await claimSubnet({ store, network: 'm', cluster, subnetLen: 24, node: 'b', leaseId: l.id });
    await assert.rejects(claimSubnet({ store, network: 'm', cluster, subnetLen: 24, node: 'c', leaseId: l.id }),
      (e: Error) => e instanceof SubnetsExhaustedError && /every \/24 subnet of 10\.60\.0\.0\/23/.test(e.message));
  } finally {
    await store.close();
  }
});
