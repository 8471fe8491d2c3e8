/**
 * The fast path: encoded replies keyed by the question (case-folded) and the
 * flags that change a reply (RD, CD, EDNS present). Keys are a numeric hash of
 * the raw bytes, checked against the stored question on a hit, so a lookup
 * allocates nothing. A hit is copied, its ID and question case patched and its
 * TTLs aged. Every entry dies with the view generation it was built under;
 * answers that depend on the asker (container names) are never stored.
 */
export interface PacketEntry {
  /** Case-folded question bytes (name, type, class). */
  question: Buffer;
  flags: number;
  buf: Buffer;
  ttlOffsets: number[];
  ttls: number[];
  createdAt: number;
  /** ms since epoch after which the entry is void. */
  validUntil: number;
  generation: number;
  lastAge: number;
}

export interface PacketCache {
  get(msg: Buffer, qEnd: number, flags: number, now: number, generation: number): PacketEntry | undefined;
  set(msg: Buffer, qEnd: number, flags: number, e: Omit<PacketEntry, 'question' | 'flags'>): void;
  clear(): void;
  readonly size: number;
}

const fold = (c: number): number => (c >= 0x41 && c <= 0x5a ? c | 0x20 : c);

/**
 * FNV-1a over the case-folded question name, its type and class, and the
 * flags. Only the name folds (here and below, loops stop 4 bytes short):
 * type and class are numbers, and folding their bytes would make HTTPS (65,
 * 0x41) and type 97 (0x61) one key.
 */
function hashOf(msg: Buffer, qEnd: number, flags: number): number {
  let h = 0x811c9dc5 ^ flags;
  let i = 12;
  for (; i < qEnd - 4; i++) h = Math.imul(h ^ fold(msg[i]), 0x01000193);
  for (; i < qEnd; i++) h = Math.imul(h ^ msg[i], 0x01000193);
  return h >>> 0;
}

function sameQuestion(e: PacketEntry, msg: Buffer, qEnd: number, flags: number): boolean {
  if (e.flags !== flags || e.question.length !== qEnd - 12) return false;
  let i = 12;
  for (; i < qEnd - 4; i++) if (fold(msg[i]) !== e.question[i - 12]) return false;
  for (; i < qEnd; i++) if (msg[i] !== e.question[i - 12]) return false;
  return true;
}

/** RD, CD, "has EDNS" and DO (echoed in our OPT, RFC 3225): the request bits that shape a reply. */
export function replyFlags(msg: Buffer, hasEdns: boolean, dnssecOk = false): number {
  return (msg[2] & 0x01) | (msg[3] & 0x10) | (hasEdns ? 0x100 : 0) | (dnssecOk ? 0x200 : 0);
}

export function createPacketCache(maxEntries = 20_000): PacketCache {
  const map = new Map<number, PacketEntry>();
  return {
    get(msg, qEnd, flags, now, generation) {
      const h = hashOf(msg, qEnd, flags);
      const e = map.get(h);
      if (!e || !sameQuestion(e, msg, qEnd, flags)) return undefined;
      if (now >= e.validUntil || e.generation !== generation) { map.delete(h); return undefined; }
      if (e.ttlOffsets.length) {
        const age = Math.floor((now - e.createdAt) / 1000);
        if (age !== e.lastAge) {
          for (let i = 0; i < e.ttlOffsets.length; i++) e.buf.writeUInt32BE(Math.max(0, e.ttls[i] - age), e.ttlOffsets[i]);
          e.lastAge = age;
        }
      }
      return e;
    },
    set(msg, qEnd, flags, e) {
      const question = Buffer.alloc(qEnd - 12);
      for (let i = 12; i < qEnd; i++) question[i - 12] = i < qEnd - 4 ? fold(msg[i]) : msg[i];
      if (map.size >= maxEntries) map.delete(map.keys().next().value as number);
      map.set(hashOf(msg, qEnd, flags), { ...e, question, flags });
    },
    clear() { map.clear(); },
    get size() { return map.size; },
  };
}

/**
 * Recognises the common query shape straight from the bytes: one question,
 * no answer/authority records, and either nothing or exactly one version-0
 * OPT after it. Returns where the question ends and the EDNS payload size
 * (-1 without EDNS) and its DO bit, or undefined for anything else (the full
 * parser decides).
 * The caller has checked the header is a plain QUERY.
 */
export function quickQuestion(msg: Buffer): { qEnd: number; edns: number; do: boolean } | undefined {
  if (msg[4] !== 0 || msg[5] !== 1 || (msg[6] | msg[7] | msg[8] | msg[9]) !== 0) return undefined;
  let off = 12;
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off];
    if (len === 0) break;
    if (len > 63) return undefined;
    off += len + 1;
  }
  const qEnd = off + 5;
  if (qEnd > msg.length || qEnd - 12 > 259) return undefined;
  const ar = (msg[10] << 8) | msg[11];
  if (ar === 0) return msg.length === qEnd ? { qEnd, edns: -1, do: false } : undefined;
  if (ar !== 1 || msg.length < qEnd + 11 || msg[qEnd] !== 0 || msg.readUInt16BE(qEnd + 1) !== 41 || msg[qEnd + 6] !== 0) return undefined;
  if (qEnd + 11 + msg.readUInt16BE(qEnd + 9) !== msg.length) return undefined;
  return { qEnd, edns: msg.readUInt16BE(qEnd + 3), do: (msg[qEnd + 7] & 0x80) !== 0 };
}
