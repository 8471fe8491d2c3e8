/**
 * The cluster layers around a driver: what every attachment gets whatever
 * its driver (bridge, overlay, macvlan). Each layer is a small module with
 * add/del/check/gc. ADD runs them after the driver, in the fixed order of
 * LAYERS, inside one transaction with the driver's own ADD, so a failing
 * layer unwinds everything before it (including the driver's wiring). DEL
 * runs them in reverse before the driver's DEL.
 */
import type { AttachmentContext, GcContext, Transaction } from './drivers/driver';
import type { ClusterConf } from './cluster-config';
import type { StorePool } from './store-pool';
import type { Result } from './types';

export interface LayerContext {
  att: AttachmentContext;
  cluster: ClusterConf;
  stores: StorePool;
}

export interface LayerGcContext {
  gc: GcContext;
  cluster: ClusterConf;
  stores: StorePool;
}

export interface Layer {
  readonly name: string;
  /** Runs after the driver's ADD; returns the (possibly amended) result and registers its undo. */
  add(ctx: LayerContext, result: Result, tx: Transaction): Promise<Result>;
  /** Idempotent; runs even when the namespace is gone. */
  del(ctx: LayerContext): Promise<void>;
  check(ctx: LayerContext, prev: Result): Promise<void>;
  gc(ctx: LayerGcContext): Promise<void>;
}

/**
 * The one place the order is fixed: DNS (pure, shapes the result), then the
 * sidecar's interception, then the endpoint record last, so the record (what
 * DNS, service VIPs and sidecars route to) appears only for a pod that is
 * completely wired.
 */
export function layers(): Layer[] {
  // Required lazily: a VERSION or STATUS call never loads them.
  const { dnsLayer } = require('./dns-layer') as typeof import('./dns-layer');
  const { meshLayer } = require('./mesh') as typeof import('./mesh');
  const { endpointLayer } = require('./endpoint-record') as typeof import('./endpoint-record');
  return [dnsLayer, meshLayer, endpointLayer];
}
