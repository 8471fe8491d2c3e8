/**
 * Service VIPs without a sidecar: the agent's entry point. The implementation
 * (model, nft rendering, partial syncs, conntrack cleanup, metrics) lives in
 * service-vips-*.ts; see service-vips-controller.ts for the options.
 */
export * from './service-vips-controller';
