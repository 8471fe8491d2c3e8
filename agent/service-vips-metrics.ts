/** Prometheus metrics of the service VIP datapath, all `meshwork_vips_*`. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface VipMetrics {
  services: Gauge;
  endpoints: Gauge;
  noEndpoints: Gauge;
  syncs: Counter;
  syncErrors: Counter;
  syncSeconds: Histogram;
}

export function createVipMetrics(registry: Registry): VipMetrics {
  const registers = [registry];
  return {
    services: new Gauge({ name: 'meshwork_vips_services', help: 'Services with a cluster IP programmed in the host VIP table', registers }),
    endpoints: new Gauge({ name: 'meshwork_vips_endpoints', help: 'DNAT targets programmed: ready endpoints summed over every VIP port', registers }),
    noEndpoints: new Gauge({ name: 'meshwork_vips_ports_without_endpoints', help: 'VIP ports (address, protocol, port) with no ready endpoint: connections to them are refused', registers }),
    syncs: new Counter({ name: 'meshwork_vips_sync_total', help: 'VIP reconcile passes (an unchanged ruleset is checked but not re-applied)', registers }),
    syncErrors: new Counter({ name: 'meshwork_vips_sync_errors_total', help: 'VIP reconcile passes that failed (nft refused or could not run)', registers }),
    syncSeconds: new Histogram({
      name: 'meshwork_vips_sync_duration_seconds', help: 'Time of one VIP reconcile pass (build, render, apply)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers,
    }),
  };
}
