/**
 * In-process fan-out of store changes to watchers. Each watcher has its own
 * queue and its own resume point (`next`): events below it are skipped, so a
 * backend may offer the same change twice (replay, then live) without a
 * watcher seeing it twice. Delivery is asynchronous and in revision order.
 */
import type { Watch, WatchEvent } from './types';
import { matchesPrefix } from './engine';

export interface Watcher extends Watch {
  readonly prefix: string;
  /** Next revision this watcher wants (everything below was delivered or skipped). */
  next: number;
  closed: boolean;
}

interface Entry extends Watcher {
  queue: WatchEvent[];
  scheduled: boolean;
  onEvent: (ev: WatchEvent) => void;
  onError?: (err: Error) => void;
}

export class WatcherSet {
  private readonly entries = new Set<Entry>();

  get size(): number { return this.entries.size; }

  /** Lowest revision any watcher still waits for (to know how far back to read). */
  minNext(): number | undefined {
    let min: number | undefined;
    for (const e of this.entries) if (min === undefined || e.next < min) min = e.next;
    return min;
  }

  add(prefix: string, next: number, onEvent: (ev: WatchEvent) => void, onError?: (err: Error) => void): Watcher {
    const set = this.entries;
    const entry: Entry = {
      prefix, next, closed: false, queue: [], scheduled: false, onEvent, onError,
      async close() { entry.closed = true; entry.queue.length = 0; set.delete(entry); },
    };
    set.add(entry);
    return entry;
  }

  /** Offers changes (sorted by revision) to every watcher; each takes those at or past its `next`. */
  offer(events: WatchEvent[]): void {
    if (events.length === 0) return;
    for (const e of this.entries) this.offerTo(e, events);
  }

  offerTo(w: Watcher, events: WatchEvent[]): void {
    const e = w as Entry;
    if (e.closed) return;
    let last = e.next - 1;
    for (const ev of events) {
      if (ev.revision < e.next) continue;
      last = ev.revision;
      if (matchesPrefix(ev, e.prefix)) e.queue.push(ev);
    }
    e.next = last + 1;
    this.schedule(e);
  }

  /** Ends a watcher with an error (e.g. compacted); it receives nothing more. */
  fail(w: Watcher, err: Error): void {
    const e = w as Entry;
    if (e.closed) return;
    void e.close();
    const report = e.onError;
    queueMicrotask(() => {
      if (report) report(err);
      else throw err;
    });
  }

  closeAll(): void {
    for (const e of [...this.entries]) void e.close();
  }

  private schedule(e: Entry): void {
    if (e.scheduled || e.queue.length === 0) return;
    e.scheduled = true;
    queueMicrotask(() => {
      e.scheduled = false;
      while (!e.closed && e.queue.length > 0) {
        const ev = e.queue.shift()!;
        e.onEvent(ev);
      }
    });
  }
}
