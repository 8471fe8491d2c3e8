/**
 * `meshwork sidecar`: runs the sidecar proxy in the current network namespace
 * (start it with `ip netns exec` or from the agent). Services and policies
 * come from a YAML file (`--policies`) or the cluster store (`--store`);
 * endpoints from the store or a static file (`--endpoints`); all watched.
 * SIGTERM/SIGINT: stop accepting, drain, exit.
 */
import type { Command } from 'commander';
import { MeshworkError } from '../lib/errors';

const int = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new MeshworkError('EINVAL', `--${name}: expected a whole number, got "${v}"`);
  return n;
};

export function register(program: Command): void {
  program.command('sidecar')
    .description('run the sidecar proxy in this network namespace')
    .option('--policies <file>', 'Service and TrafficPolicy YAML (instead of the store), reloaded on change')
    .option('--endpoints <file>', 'static endpoint list, YAML or JSON (instead of the store), reloaded on change')
    .option('--store <spec>', 'cluster store to watch for what --policies/--endpoints do not give (e.g. file:/var/lib/meshwork)')
    .option('--outbound-port <port>', 'port redirected outbound traffic arrives on', int('outbound-port'), 15001)
    .option('--inbound-port <port>', 'port redirected inbound traffic arrives on', int('inbound-port'), 15006)
    .option('--admin-port <port>', 'admin server port (/metrics, /ready, /config, /endpoints)', int('admin-port'), 15090)
    .option('--admin-host <addr>', 'admin server address', '0.0.0.0')
    .option('--workload <name>', 'this pod\'s workload name (source_workload label)', 'unknown')
    .option('--namespace <ns>', 'this pod\'s namespace (source_namespace label, short service names)', 'default')
    .option('--gid <gid>', 'group id to run with; interception skips this group\'s traffic (0: keep)', int('gid'), 1337)
    .option('--drain-ms <ms>', 'on SIGTERM, time allowed for in-flight requests', int('drain-ms'), 5000)
    .option('--headers-timeout-ms <ms>', 'cut clients that take longer to send request headers', int('headers-timeout-ms'), 10000)
    .option('--sniff-timeout-ms <ms>', 'wait this long for a client\'s first bytes before treating it as raw TCP', int('sniff-timeout-ms'), 500)
    .action(async (o) => {
      const { createSidecar } = await import('../sidecar/sidecar');
      const { combinedSource, endpointFileSource, storeEndpointSource } = await import('../sidecar/sources');
      if (!o.store && !(o.policies && o.endpoints)) {
        throw new MeshworkError('EINVAL', 'meshwork sidecar: give --store SPEC, or both --policies FILE and --endpoints FILE');
      }
      let closeStore: (() => Promise<void>) | undefined;
      let store: import('../store/types').Store | undefined;
      if (o.store) {
        const { openStore } = await import('../store/open');
        const opened = await openStore(o.store);
        store = opened;
        closeStore = () => opened.close();
      }
      const source = combinedSource(o.policies ? { file: o.policies } : { store: store! },
        o.endpoints ? endpointFileSource(o.endpoints) : storeEndpointSource(store!));
      if (o.gid > 0) process.setgid!(o.gid);
      const log = (m: string) => process.stderr.write(`meshwork sidecar: ${m}\n`);
      const sidecar = createSidecar({
        source, outboundPort: o.outboundPort, inboundPort: o.inboundPort, adminPort: o.adminPort, adminHost: o.adminHost,
        workload: o.workload, namespace: o.namespace, headersTimeoutMs: o.headersTimeoutMs, sniffTimeoutMs: o.sniffTimeoutMs, log,
      });
      await sidecar.start();
      log(`listening outbound :${sidecar.ports.outbound} inbound :${sidecar.ports.inbound} admin :${sidecar.ports.admin}`);
      await new Promise<void>((resolve) => {
        const stop = async () => {
          process.removeAllListeners('SIGTERM');
          process.removeAllListeners('SIGINT');
          await sidecar.drain(o.drainMs);
          await sidecar.stop();
          await closeStore?.();
          resolve();
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}
