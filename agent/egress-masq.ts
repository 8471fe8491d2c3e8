/**
 * Egress masquerade for the overlay, as flannel's --ip-masq does: a pod's
 * traffic to anything outside the cluster CIDRs leaves with the node's own
 * address (the underlay does not route pod subnets); pod-to-pod traffic, on
 * this node or across the VXLAN, keeps its addresses. One nft table per
 * overlay network in the host namespace, replaced atomically.
 */
import { nftApply } from '../cni/nft/apply';
import { deleteTableScript, replaceTableScript } from '../cni/nft/rules';

export function egressTable(network: string): string {
  return `meshwork-egress-${network}`.slice(0, 63);
}

/** The table's script for this node's pod subnets and the cluster CIDRs (both in network form). */
export function egressScript(network: string, podSubnets: string[], clusterCidrs: string[]): string {
  const v6 = (c: string) => c.includes(':');
  const rules: string[] = [];
  for (const s of podSubnets) {
    const family = v6(s) ? 'ip6' : 'ip';
    const multicast = v6(s) ? 'ff00::/8' : '224.0.0.0/4';
    const clusters = clusterCidrs.filter((c) => v6(c) === v6(s));
    const notCluster = clusters.map((c) => ` ${family} daddr != ${c}`).join('');
    rules.push(`    ${family} saddr ${s}${notCluster} ${family} daddr != ${multicast} masquerade`);
  }
  return replaceTableScript(egressTable(network), `  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n${rules.join('\n')}\n  }`);
}

/** `netns`: path of the host namespace to program; default, our own. */
export async function applyEgressMasq(network: string, podSubnets: string[], clusterCidrs: string[], netns?: string): Promise<void> {
  await nftApply(egressScript(network, podSubnets, clusterCidrs), { netns });
}

export async function removeEgressMasq(network: string, netns?: string): Promise<void> {
  await nftApply(deleteTableScript(egressTable(network)), { netns });
}
