/** macvlan link verbs: create a sub-interface of a parent, optionally born in another namespace. */
import { u32, findAttr, type Attr } from './attrs';
import { linkAdd } from './link';
import type { Netlink } from './socket';

/** linux/if_link.h MACVLAN_MODE_* values. */
export const MACVLAN_MODES = { private: 1, vepa: 2, bridge: 4, passthru: 8 } as const;
export type MacvlanMode = keyof typeof MACVLAN_MODES;
const IFLA_MACVLAN_MODE = 1;

export interface MacvlanSpec {
  name: string;
  /** Index of the parent ("master") link in this socket's namespace. */
  parent: number;
  mode: MacvlanMode;
  mtu?: number;
  mac?: string;
  /** Create the link directly inside the namespace open at this fd. */
  netnsFd?: number;
}

export async function macvlanAdd(nl: Netlink, s: MacvlanSpec): Promise<void> {
  await linkAdd(nl, {
    name: s.name,
    kind: 'macvlan',
    data: [u32(IFLA_MACVLAN_MODE, MACVLAN_MODES[s.mode])],
    parent: s.parent,
    mtu: s.mtu,
    mac: s.mac,
    netnsFd: s.netnsFd,
  });
}

/** The mode of a macvlan link, from its IFLA_INFO_DATA. */
export function macvlanModeOf(data: Attr[] | undefined): MacvlanMode | undefined {
  const v = data && findAttr(data, IFLA_MACVLAN_MODE);
  if (!v) return undefined;
  const n = v.readUInt32LE(0);
  return (Object.keys(MACVLAN_MODES) as MacvlanMode[]).find((k) => MACVLAN_MODES[k] === n);
}
