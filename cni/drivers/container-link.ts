/**
 * The container side every driver ends with, once its link is inside the
 * pod's namespace: link up, addresses, routes (a route without a gateway goes
 * via the gateway of its address family, as the reference plugins do).
 */
import { MeshworkError } from '../../lib/errors';
import type { Netlink } from '../netlink/socket';
import { linkByName, linkSetUp, type Link } from '../netlink/link';
import { addrAdd } from '../netlink/addr';
import { routeReplace } from '../netlink/route';
import { parseCidr } from '../netlink/ip';

export interface ContainerAddressing {
  ips: Array<{ address: string; gateway?: string; family: 4 | 6 }>;
  routes: Array<{ dst: string; gw?: string }>;
}

export async function configureContainerLink(pod: Netlink, ifname: string, a: ContainerAddressing): Promise<Link> {
  const link = await linkByName(pod, ifname);
  if (!link) throw new MeshworkError('ELINK', `interface ${ifname} missing in the container right after creation`);
  await linkSetUp(pod, link.index);
  for (const ip of a.ips) await addrAdd(pod, link.index, ip.address, { noDad: true });
  for (const r of a.routes) {
    const fam = parseCidr(r.dst).family;
    const gw = r.gw ?? a.ips.find((i) => i.family === fam && i.gateway)?.gateway;
    await routeReplace(pod, { dst: r.dst, gw, oif: link.index });
  }
  return link;
}
