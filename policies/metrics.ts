/**
 * Prometheus metrics of a policy watcher, as a PolicyWatcherMetrics hook:
 *   meshwork_policies_reloads_total{result="success"|"failure"}
 *   meshwork_policies_revision            store revision (or load count) in force
 *   meshwork_policies_documents{kind}     documents in the snapshot in force
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { PolicyWatcherMetrics } from './watch';

export function createPolicyMetrics(registry: Registry): PolicyWatcherMetrics {
  const reloads = new Counter({ name: 'meshwork_policies_reloads_total', help: 'Policy snapshots loaded, by result; a failure keeps the previous snapshot', labelNames: ['result'], registers: [registry] });
  const revision = new Gauge({ name: 'meshwork_policies_revision', help: 'Revision of the policy snapshot in force', registers: [registry] });
  const documents = new Gauge({ name: 'meshwork_policies_documents', help: 'Documents in the policy snapshot in force, by kind', labelNames: ['kind'], registers: [registry] });
  return {
    reload: (result) => reloads.inc({ result }),
    snapshot: (snap) => {
      revision.set(snap.revision);
      documents.set({ kind: 'Service' }, snap.services.size);
      documents.set({ kind: 'TrafficPolicy' }, snap.trafficPolicies.size);
    },
  };
}
