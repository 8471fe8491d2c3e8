/** The contract between the plugin core (cni/plugin.ts) and IPAM. */

/** The full parsed network config (name, cniVersion, ipam, runtimeConfig, args, prevResult...). */
export type NetConf = Record<string, unknown>;

export interface IpamContext {
  netconf: NetConf;
  /** stdin exactly as received: handed unchanged to an external IPAM plugin. */
  rawStdin: Buffer;
  /** The CNI_* environment of this call (and anything else the runtime set). */
  env: Record<string, string | undefined>;
  containerId: string;
  ifname: string;
}

export interface IpamGcContext {
  netconf: NetConf;
  rawStdin: Buffer;
  env: Record<string, string | undefined>;
  validAttachments: Array<{ containerID: string; ifname: string }>;
}

export interface IpamResult {
  /** CIDR addresses (e.g. 10.1.0.5/24) with the gateway of their range. */
  ips: Array<{ address: string; gateway?: string }>;
  routes: Array<{ dst: string; gw?: string }>;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}
