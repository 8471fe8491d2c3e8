/**
 * Where each kind of cluster state lives in the store. One place, so the
 * plugin, the agent, DNS, the sidecar and the CLI agree on the layout.
 */
export const ROOT = '/meshwork/';

export const keys = {
  node: (name: string) => `${ROOT}nodes/${name}`,
  nodes: () => `${ROOT}nodes/`,
  /** A pod-subnet lease of the overlay: `/meshwork/subnets/<network>/<cidr with _ for />`. */
  subnet: (network: string, cidr: string) => `${ROOT}subnets/${network}/${cidr.replace('/', '_')}`,
  subnets: (network: string) => `${ROOT}subnets/${network}/`,
  endpoint: (network: string, containerId: string, ifname: string) => `${ROOT}endpoints/${network}/${containerId}/${ifname}`,
  endpoints: (network?: string) => (network ? `${ROOT}endpoints/${network}/` : `${ROOT}endpoints/`),
  /** A policy document (Service, TrafficPolicy, ...), stored validated as JSON. */
  policy: (kind: string, namespace: string, name: string) => `${ROOT}policies/${kind}/${namespace}/${name}`,
  policies: (kind?: string) => (kind ? `${ROOT}policies/${kind}/` : `${ROOT}policies/`),
  /** A service's allocated cluster IP: `/meshwork/clusterips/<ip>` -> "<namespace>/<name>". */
  clusterIp: (ip: string) => `${ROOT}clusterips/${ip}`,
  clusterIps: () => `${ROOT}clusterips/`,
};
