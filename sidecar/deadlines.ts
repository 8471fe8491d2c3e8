/**
 * Per-request deadlines (overall and per-try timeouts) without a Node timer
 * each. Deadlines of one duration expire in the order they were set, so each
 * duration keeps an intrusive list and one timer armed for its head: setting
 * and cancelling are O(1) and allocate one small entry, where setTimeout and
 * clearTimeout cost a Timeout object, async ids and a call into C++ for the
 * loop time. A cancelled deadline is unlinked at once (no tombstones to sweep),
 * and the list's timer is left armed: it finds the next head, or nothing.
 */
export class Deadline {
  /** @internal */ prev: Deadline | undefined = undefined;
  /** @internal */ next: Deadline | undefined = undefined;
  /** @internal */ list: DurationList | undefined;
  /** @internal dropped when unlinked: an entry promoted to the old generation must not keep a finished request alive. */
  fire: (() => void) | undefined;
  constructor(readonly at: number, fire: () => void, list: DurationList) { this.fire = fire; this.list = list; }
}

class DurationList {
  head: Deadline | undefined = undefined;
  tail: Deadline | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;
  /** When the armed timer fires, ms on the deadlines' clock. */
  timerAt = 0;
  constructor(readonly ms: number) {}

  push(d: Deadline): void {
    d.prev = this.tail;
    if (this.tail) this.tail.next = d; else this.head = d;
    this.tail = d;
  }

  unlink(d: Deadline): void {
    if (d.prev) d.prev.next = d.next; else this.head = d.next;
    if (d.next) d.next.prev = d.prev; else this.tail = d.prev;
    d.prev = d.next = d.list = undefined;
    d.fire = undefined;
  }
}

export class Deadlines {
  private readonly lists = new Map<number, DurationList>();
  constructor(private readonly clock: () => number = Date.now) {}

  /** Calls `fire` once, `ms` from now, unless cancelled first. */
  add(ms: number, fire: () => void): Deadline {
    let list = this.lists.get(ms);
    if (!list) { list = new DurationList(ms); this.lists.set(ms, list); }
    const d = new Deadline(this.clock() + ms, fire, list);
    list.push(d);
    if (!list.timer) this.arm(list, d.at);
    return d;
  }

  cancel(d: Deadline | undefined): void {
    if (d?.list) d.list.unlink(d);
  }

  /** Drops every pending deadline (shutdown). */
  stop(): void {
    for (const l of this.lists.values()) {
      if (l.timer) clearTimeout(l.timer);
      l.timer = undefined;
      while (l.head) l.unlink(l.head);
    }
    this.lists.clear();
  }

  private arm(list: DurationList, at: number): void {
    list.timerAt = at;
    list.timer = setTimeout(() => this.expire(list), Math.max(1, at - this.clock()));
    list.timer.unref();
  }

  private expire(list: DurationList): void {
    list.timer = undefined;
    const now = this.clock();
    for (let d = list.head; d && d.at <= now; d = list.head) {
      const fire = d.fire!;
      list.unlink(d);
      try { fire(); } catch { /* one failing callback must not stop the others */ }
    }
    if (list.head) this.arm(list, list.head.at);
  }
}
