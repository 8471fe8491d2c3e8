/** The JSON values stored under store/keys.ts. */

/** A host of the cluster, written by its agent under a lease. */
export interface NodeRecord {
  name: string;
  /** Underlay address other nodes send VXLAN to. */
  underlay: string;
  /** MAC of this node's VXLAN device (the VTEP). */
  vtepMac?: string;
  /** Pod subnets leased by this node, per network (IPv4 and optionally IPv6). */
  podSubnets?: Record<string, string[]>;
  /** Address of this node's DNS server, if it runs one. */
  dns?: string;
  labels?: Record<string, string>;
}

/** A pod subnet lease of the overlay. */
export interface SubnetLease {
  network: string;
  subnet: string;
  node: string;
}

/** Every container the plugin wired, recorded on ADD and removed on DEL. */
export interface EndpointRecord {
  network: string;
  containerId: string;
  ifname: string;
  /** Kubernetes-style identity, from CNI_ARGS K8S_POD_NAMESPACE / K8S_POD_NAME. */
  namespace: string;
  pod: string;
  /** Container name and aliases for Docker-style DNS on its network. */
  hostname?: string;
  aliases?: string[];
  node: string;
  /** Addresses without prefix length. */
  ips: string[];
  labels: Record<string, string>;
  /** False while the endpoint should receive no traffic (headless DNS, VIPs, sidecar). */
  ready: boolean;
  /** Set when the pod is injected with the sidecar. */
  mesh?: boolean;
}
