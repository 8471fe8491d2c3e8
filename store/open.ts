/**
 * The one way every component opens the cluster store from a spec string
 * (see store/spec.ts). Backends load lazily, so the CNI plugin using the file
 * store never pays for loading the etcd/gRPC client.
 */
import type { Store } from './types';
import { parseStoreSpec, DEFAULT_STORE_SPEC } from './spec';
import type { FileStoreOptions } from './file';
import type { EtcdStoreOptions } from './etcd';
import type { MemoryStoreOptions } from './memory';

export { DEFAULT_STORE_SPEC, parseStoreSpec } from './spec';

export interface OpenStoreOptions {
  file?: FileStoreOptions;
  etcd?: EtcdStoreOptions;
  memory?: MemoryStoreOptions;
}

export async function openStore(spec: string = DEFAULT_STORE_SPEC, opts: OpenStoreOptions = {}): Promise<Store> {
  const s = parseStoreSpec(spec);
  switch (s.kind) {
    case 'memory': {
      const { createMemoryStore } = await import('./memory');
      return createMemoryStore(opts.memory);
    }
    case 'file': {
      const { openFileStore } = await import('./file');
      return openFileStore(s.dir, opts.file);
    }
    case 'etcd': {
      const { openEtcdStore } = await import('./etcd');
      return openEtcdStore(s.endpoints, opts.etcd);
    }
  }
}
