/**
 * The canary controller's own metrics, on a registry the caller owns (no
 * global default registry, so tests and an embedding agent stay separate).
 */
import { Counter, Gauge, Registry } from 'prom-client';

export interface CanaryMetrics {
  registry: Registry;
  /** Current canary weight (0..100) per rollout. */
  weight: Gauge<'namespace' | 'policy' | 'subset'>;
  /** 1 for the rollout's current phase, 0 for the others. */
  phase: Gauge<'namespace' | 'policy' | 'phase'>;
  decisions: Counter<'namespace' | 'policy' | 'decision'>;
}

export const PHASES = ['Progressing', 'Succeeded', 'RolledBack', 'Failed'] as const;

export function createCanaryMetrics(registry: Registry = new Registry()): CanaryMetrics {
  return {
    registry,
    weight: new Gauge({
      name: 'meshwork_canary_weight',
      help: 'Weight (percent) the canary subset currently receives on its route',
      labelNames: ['namespace', 'policy', 'subset'],
      registers: [registry],
    }),
    phase: new Gauge({
      name: 'meshwork_canary_phase',
      help: 'Phase of each rollout: 1 for the current phase',
      labelNames: ['namespace', 'policy', 'phase'],
      registers: [registry],
    }),
    decisions: new Counter({
      name: 'meshwork_canary_decisions_total',
      help: 'Decisions taken by the canary controller, by kind (start, promote, hold, rollback, complete, conflict, error)',
      labelNames: ['namespace', 'policy', 'decision'],
      registers: [registry],
    }),
  };
}
