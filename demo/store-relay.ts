/**
 * Makes an etcd the user named (`--store etcd:http://host:2379`) reachable from
 * inside the demo's namespaces, which have no route to the machine's own
 * network: the demo process opens a listener *inside* each namespace (a
 * listening socket keeps the namespace it was created in, and `listen(port)`
 * without a host binds synchronously, so `inNetnsSync` can hold it) and pipes
 * every accepted connection to the real etcd from the machine's namespace.
 * No extra process. Components inside use `etcd:http://127.0.0.1:<port>`.
 */
import * as net from 'node:net';
import { inNetnsSync } from '../lib/netns';
import { parseStoreSpec } from '../store/spec';

/** Port the relay listens on inside each namespace (the namespaces are the demo's own). */
export const RELAY_BASE_PORT = 23790;

export interface StoreRelay {
  /** The store spec for components inside the namespaces. */
  readonly insideSpec: string;
  /** Opens the relay's listeners inside one more namespace. */
  addNamespace(nsPath: string): void;
  close(): void;
}

/** Undefined when the store needs no relay (a file store is reachable everywhere). */
export function createStoreRelay(spec: string): StoreRelay | undefined {
  const parsed = parseStoreSpec(spec);
  if (parsed.kind !== 'etcd') return undefined;
  const targets = parsed.endpoints.map((e) => {
    const u = new URL(e);
    if (u.protocol !== 'http:') throw new RangeError(`--store ${spec}: the demo relays plain http:// etcd endpoints only, got ${e}`);
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 2379) };
  });
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); };
  return {
    insideSpec: `etcd:${targets.map((_, i) => `http://127.0.0.1:${RELAY_BASE_PORT + i}`).join(',')}`,
    addNamespace(nsPath) {
      targets.forEach((t, i) => {
        const server = net.createServer((inside) => {
          const out = net.connect(t.port, t.host);
          track(inside); track(out);
          const end = () => { inside.destroy(); out.destroy(); };
          inside.on('error', end); out.on('error', end);
          inside.pipe(out).pipe(inside);
        });
        server.on('error', () => { /* the namespace went away */ });
        inNetnsSync(nsPath, () => server.listen(RELAY_BASE_PORT + i));
        servers.push(server);
      });
    },
    close() {
      for (const s of servers) s.close();
      for (const s of sockets) s.destroy();
    },
  };
}
