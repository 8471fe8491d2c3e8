/**
 * The agent's Prometheus metrics, all `meshwork_agent_*`, in one place (listed
 * in agent/README.md). Registered on the registry the host process shares
 * (agent, DNS, CNI daemon), or a private one for tests.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface AgentMetrics {
  registry: Registry;
  nodes: Gauge;
  peers: Gauge;
  reconciles: Counter;
  reconcileSeconds: Histogram;
  changes: Counter<'op'>;
  errors: Counter<'stage'>;
  registrations: Counter;
}

export const ERROR_STAGES = ['register', 'reconcile', 'watch', 'lease', 'services'] as const;

export function createAgentMetrics(registry: Registry = new Registry()): AgentMetrics {
  const m: AgentMetrics = {
    registry,
    nodes: new Gauge({ name: 'meshwork_agent_nodes', help: 'Nodes registered in the cluster store (this one included)', registers: [registry] }),
    peers: new Gauge({ name: 'meshwork_agent_peers_programmed', help: 'Peers whose route, neighbour and FDB entries are programmed on this host', registers: [registry] }),
    reconciles: new Counter({ name: 'meshwork_agent_reconciles_total', help: 'Overlay reconcile passes run', registers: [registry] }),
    reconcileSeconds: new Histogram({
      name: 'meshwork_agent_reconcile_duration_seconds', help: 'Time of one overlay reconcile pass (read kernel, diff, apply)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry],
    }),
    changes: new Counter({ name: 'meshwork_agent_kernel_changes_total', help: 'Kernel overlay entries changed, by op (add, remove)', labelNames: ['op'], registers: [registry] }),
    errors: new Counter({ name: 'meshwork_agent_errors_total', help: 'Agent errors, by stage (register, reconcile, watch, lease, services)', labelNames: ['stage'], registers: [registry] }),
    registrations: new Counter({ name: 'meshwork_agent_registrations_total', help: 'Times this agent (re-)registered its node (start, lost lease)', registers: [registry] }),
  };
  // Every label value exists from the start, so dashboards and alerts see zeros, not gaps.
  for (const stage of ERROR_STAGES) m.errors.inc({ stage }, 0);
  for (const op of ['add', 'remove']) m.changes.inc({ op }, 0);
  return m;
}
