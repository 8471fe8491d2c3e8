/**
 * The resident daemon's Deferrer (cni/drivers/driver.ts): runs a keyed task
 * after a grace period unless cancelled or replaced meanwhile. Tasks run one
 * at a time per key; `flush` runs whatever is pending now (daemon shutdown).
 */
import type { Deferrer } from './drivers/driver';

export interface FlushableDeferrer extends Deferrer {
  flush(): Promise<void>;
  pending(): number;
}

export function createDeferrer(graceMs: number, onError: (key: string, err: unknown) => void = () => undefined): FlushableDeferrer {
  const tasks = new Map<string, { timer: NodeJS.Timeout; fn: () => Promise<void> }>();
  const run = async (key: string) => {
    const t = tasks.get(key);
    if (!t) return;
    tasks.delete(key);
    clearTimeout(t.timer);
    try { await t.fn(); } catch (err) { onError(key, err); }
  };
  return {
    later(key, fn) {
      const old = tasks.get(key);
      if (old) clearTimeout(old.timer);
      const timer = setTimeout(() => void run(key), graceMs);
      // Never the reason a process stays alive: a stopped daemon's next call (DEL/GC) finishes the job.
      timer.unref();
      tasks.set(key, { timer, fn });
    },
    cancel(key) {
      const t = tasks.get(key);
      if (t) { clearTimeout(t.timer); tasks.delete(key); }
    },
    async flush() {
      await Promise.all([...tasks.keys()].map(run));
    },
    pending: () => tasks.size,
  };
}
