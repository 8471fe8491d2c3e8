/**
 * The shared deadline lists behind per-request timeouts (sidecar/deadlines.ts):
 * due deadlines fire once, in order; cancelled ones never fire and let go of
 * their callback; the clock is injected, the timers are real.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Deadlines } from '../../sidecar/deadlines';
import { eventually } from '../helpers/lab';

test('deadlines fire once when due, in order, never after cancel; a cancelled one drops its callback', async () => {
  let t = 0;
  const d = new Deadlines(() => t);
  const fired: string[] = [];
  try {
    const a = d.add(5, () => fired.push('a'));
    const b = d.add(5, () => fired.push('b'));
    const a2 = d.add(5, () => fired.push('a2'));
    d.add(40, () => fired.push('c'));
    d.cancel(b);
    assert.equal(b.fire, undefined, 'a cancelled deadline must not keep its request alive');
    t = 10; // the 5 ms ones are due, the 40 ms one is not
    await eventually(() => fired.length >= 2, 5000, 'due deadlines');
    assert.deepEqual(fired, ['a', 'a2']);
    d.cancel(a); // after it fired: nothing happens
    t = 50;
    await eventually(() => fired.includes('c'), 5000, 'later deadline');
    assert.deepEqual(fired, ['a', 'a2', 'c']);
  } finally {
    d.stop();
  }
});

test('deadlines: a callback that throws does not stop the others; stop() drops what is pending', async () => {
  let t = 0;
  const d = new Deadlines(() => t);
  const fired: string[] = [];
  d.add(5, () => { throw new Error('boom'); });
  d.add(5, () => fired.push('after'));
  const pending = d.add(60_000, () => fired.push('never'));
  t = 10;
  await eventually(() => fired.includes('after'), 5000, 'second callback');
  d.stop();
  assert.equal(pending.fire, undefined);
  assert.deepEqual(fired, ['after']);
});
