import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { storeContract } from './contract';
import { createMemoryStore, type MemoryStore } from '../../store/memory';

storeContract({
  name: 'memory',
  async open(opts) {
    return { store: createMemoryStore({ historyLimit: opts?.historyLimit }) };
  },
  abandonLease(store, lease) { (store as MemoryStore).abandonLease(lease.id); },
});

test('memory: lease expiry follows the injected clock', async () => {
  let now = 1_000_000;
  const store = createMemoryStore({ now: () => now });
  try {
    const lease = await store.grantLease(5);
    await store.put('/k', 'v', { lease: lease.id });
    store.abandonLease(lease.id);
    const lost: Error[] = [];
    lease.onLost((e) => lost.push(e));
    now += 4_999;
    assert.ok(await store.get('/k'));
    now += 1;
    assert.equal(await store.get('/k'), undefined);
    await new Promise((r) => queueMicrotask(() => r(undefined)));
    assert.equal((lost[0] as any)?.code, 'ESTORE_LEASE_LOST');
  } finally {
    await store.close();
  }
});
