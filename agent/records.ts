/**
 * Validation of what the agent reads from the store. Records are written by
 * other agents (maybe other versions): a malformed one is skipped with a
 * reason, never allowed to break the reconcile of every other peer.
 */
import { isIP } from 'node:net';
import type { NodeRecord, SubnetLease } from '../store/records';

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

function parseJson(text: string): unknown {
  try { return JSON.parse(text); } catch { return undefined; }
}

export function parseNodeRecord(text: string): Parsed<NodeRecord> {
  const v = parseJson(text) as Partial<NodeRecord> | undefined;
  if (!v || typeof v !== 'object') return { ok: false, reason: 'not a JSON object' };
  if (typeof v.name !== 'string' || !v.name) return { ok: false, reason: 'missing "name"' };
  if (typeof v.underlay !== 'string' || !isIP(v.underlay)) return { ok: false, reason: `"underlay" ${JSON.stringify(v.underlay)} is not an IP address` };
  if (v.vtepMac !== undefined && (typeof v.vtepMac !== 'string' || !MAC.test(v.vtepMac))) return { ok: false, reason: `"vtepMac" ${JSON.stringify(v.vtepMac)} is not a MAC address` };
  if (v.podSubnets !== undefined) {
    if (typeof v.podSubnets !== 'object' || v.podSubnets === null) return { ok: false, reason: '"podSubnets" is not an object' };
    for (const [net, list] of Object.entries(v.podSubnets)) {
      if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) return { ok: false, reason: `"podSubnets.${net}" is not a list of CIDRs` };
    }
  }
  return { ok: true, value: v as NodeRecord };
}

export function parseSubnetLease(text: string): Parsed<SubnetLease> {
  const v = parseJson(text) as Partial<SubnetLease> | undefined;
  if (!v || typeof v !== 'object') return { ok: false, reason: 'not a JSON object' };
  if (typeof v.node !== 'string' || typeof v.subnet !== 'string' || typeof v.network !== 'string') return { ok: false, reason: 'needs "network", "subnet" and "node" strings' };
  return { ok: true, value: v as SubnetLease };
}
