/**
 * `meshwork policy validate|apply|get|delete`: the user's door to policies/.
 * Errors reach cli/main.ts as MeshworkErrors and are shown without a stack.
 */
import type { Command } from 'commander';
import type { Store } from '../store/types';
import { lineDiff } from '../policies/diff';
import { applyPolicies, deletePolicies, type ApplyEntry, type DeleteTarget } from '../policies/apply';
import { DEFAULT_SERVICE_CIDR } from '../policies/cidr';
import { formatIssue, PolicyInputError } from '../policies/errors';
import { loadPolicies, loadPoliciesOrThrow, readPolicySources, type PolicyContext } from '../policies/load';
import { toManifest, toYaml } from '../policies/manifest';
import type { PolicyDocument, Service } from '../policies/model';
import { readStored, servicesOf, trafficPoliciesOf, type Kind } from '../policies/stored';

const DEFAULT_STORE = 'file:/var/lib/meshwork';
const storeSpec = (flag?: string) => flag ?? process.env.MESHWORK_STORE ?? DEFAULT_STORE;

async function withStore<T>(spec: string, fn: (store: Store) => Promise<T>): Promise<T> {
  const { openStore } = await import('../store/open');
  const store = await openStore(spec);
  try { return await fn(store); } finally { await store.close(); }
}

const KIND_ALIASES: Record<string, Kind> = {
  service: 'Service', services: 'Service', svc: 'Service',
  trafficpolicy: 'TrafficPolicy', trafficpolicies: 'TrafficPolicy', tp: 'TrafficPolicy',
};
function parseKind(text: string): Kind {
  const k = KIND_ALIASES[text.toLowerCase()];
  if (!k) throw new PolicyInputError(`unknown kind "${text}"; expected service (svc) or trafficpolicy (tp)`);
  return k;
}

const ref = (kind: string, ns: string, name: string) => `${kind.toLowerCase()}/${name}${ns === 'default' ? '' : ` (namespace ${ns})`}`;
const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const collect = (v: string, prev: string[]) => [...prev, v];

export function register(program: Command): void {
  const policy = program.command('policy').description('validate, apply, show and delete Service and TrafficPolicy documents');

  policy.command('validate')
    .description('check policy files without applying them; exit 1 listing every error')
    .argument('<paths...>', 'YAML files or directories')
    .option('--store <spec>', 'also resolve references against this store (file:DIR, etcd:URL, memory:)')
    .action(async (paths: string[], o: { store?: string }) => {
      const sources = readPolicySources(paths);
      const spec = o.store ?? process.env.MESHWORK_STORE;
      const check = (ctx: PolicyContext) => {
        const r = loadPolicies(sources, ctx);
        for (const i of r.issues) process.stderr.write(`${formatIssue(i)}\n`);
        if (r.issues.length > 0) {
          process.stderr.write(`${r.issues.length} error${r.issues.length === 1 ? '' : 's'}\n`);
          process.exitCode = 1;
        } else {
          out(`${r.documents.length} document${r.documents.length === 1 ? '' : 's'} valid in ${sources.length} file${sources.length === 1 ? '' : 's'}`);
        }
      };
      if (!spec) return check({ unresolvedHint: ' (validate with --store to resolve against the cluster)' });
      await withStore(spec, async (store) => {
        const state = await readStored(store);
        check({ services: servicesOf(state), trafficPolicies: trafficPoliciesOf(state) });
      });
    });

  policy.command('apply')
    .description('validate, then write every document in one transaction')
    // Not requiredOption: its [] default would satisfy commander and `apply` alone would do nothing silently.
    .option('-f, --filename <path>', 'YAML file or directory (repeatable, required)', collect, [])
    .option('--dry-run', 'show what would change, write nothing')
    .option('--store <spec>', `cluster store (default $MESHWORK_STORE or ${DEFAULT_STORE})`)
    .option('--service-cidr <cidr>', 'range cluster IPs are allocated from', DEFAULT_SERVICE_CIDR)
    .action(async (o: { filename: string[]; dryRun?: boolean; store?: string; serviceCidr: string }) => {
      if (o.filename.length === 0) throw new PolicyInputError('policy apply needs -f FILE|DIR (repeatable): the documents to apply');
      const sources = readPolicySources(o.filename);
      await withStore(storeSpec(o.store), async (store) => {
        const r = await applyPolicies(store, sources, { dryRun: o.dryRun, serviceCidr: o.serviceCidr });
        // As kubectl: an empty file or directory is a mistake worth saying, not a silent success.
        if (r.entries.length === 0) throw new PolicyInputError(`no documents in ${o.filename.join(', ')}`);
        for (const e of r.entries) {
          const imported = e.writtenAs.startsWith('meshwork.dev/') ? '' : ` (from ${e.writtenAs.replace(/\/([A-Za-z]+)$/, ' $1')})`;
          out(`${ref(e.kind, e.namespace, e.name)} ${e.action}${imported}${o.dryRun ? ' (dry run)' : ''}`);
          if (o.dryRun && e.action !== 'unchanged') out(diffOf(e).map((l) => `    ${l}`).join('\n'));
        }
      });
    });

  policy.command('get')
    .description('show stored documents; -o yaml output can be applied again unchanged')
    .argument('[kind]', 'service (svc) or trafficpolicy (tp); all kinds when omitted')
    .argument('[name]', 'a document name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-A, --all-namespaces', 'every namespace')
    .option('-o, --output <format>', 'yaml, json or table', 'table')
    .option('--store <spec>', `cluster store (default $MESHWORK_STORE or ${DEFAULT_STORE})`)
    .action(async (kindArg: string | undefined, name: string | undefined, o: { namespace: string; allNamespaces?: boolean; output: string; store?: string }) => {
      if (!['yaml', 'json', 'table'].includes(o.output)) throw new PolicyInputError(`unknown output format "${o.output}"; expected yaml, json or table`);
      const kind = kindArg === undefined || kindArg === 'all' ? undefined : parseKind(kindArg);
      if (name !== undefined && !kind) throw new PolicyInputError('a name needs a kind: meshwork policy get service NAME');
      await withStore(storeSpec(o.store), async (store) => {
        const state = await readStored(store);
        for (const bad of state.invalid) process.stderr.write(`meshwork: skipping invalid store entry: ${bad.error.message}\n`);
        const docs = [...state.docs.values()].map((e) => e.doc)
          .filter((d) => (!kind || d.kind === kind) && (o.allNamespaces || d.metadata.namespace === o.namespace) && (name === undefined || d.metadata.name === name))
          .sort((a, b) => a.kind.localeCompare(b.kind) || a.metadata.namespace.localeCompare(b.metadata.namespace) || a.metadata.name.localeCompare(b.metadata.name));
        if (name !== undefined && docs.length === 0) {
          throw new PolicyInputError(`${ref(kind!, o.namespace, name)} not found`);
        }
        if (o.output === 'yaml') { if (docs.length) out(toYaml(docs)); return; }
        if (o.output === 'json') {
          const body = name !== undefined ? toManifest(docs[0]) : { apiVersion: 'v1', kind: 'List', items: docs.map(toManifest) };
          out(JSON.stringify(body, null, 2));
          return;
        }
        out(table(docs));
      });
    });

  policy.command('delete')
    .description('delete documents named on the command line or in files')
    .argument('[kind]', 'service (svc) or trafficpolicy (tp)')
    .argument('[name]', 'the document name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-f, --filename <path>', 'delete the documents of these files (repeatable)', collect, [])
    .option('--ignore-not-found', 'treat documents that do not exist as deleted')
    .option('--store <spec>', `cluster store (default $MESHWORK_STORE or ${DEFAULT_STORE})`)
    .action(async (kindArg: string | undefined, name: string | undefined, o: { namespace: string; filename: string[]; ignoreNotFound?: boolean; store?: string }) => {
      let targets: DeleteTarget[];
      if (o.filename.length > 0) {
        if (kindArg !== undefined) throw new PolicyInputError('give either KIND NAME or -f FILE, not both');
        targets = [];
      } else {
        if (kindArg === undefined || name === undefined) throw new PolicyInputError('what to delete: meshwork policy delete KIND NAME [-n NS], or -f FILE');
        targets = [{ kind: parseKind(kindArg), namespace: o.namespace, name }];
      }
      await withStore(storeSpec(o.store), async (store) => {
        if (o.filename.length > 0) targets = targetsOfFiles(o.filename, servicesOf(await readStored(store)));
        const r = await deletePolicies(store, targets, { ignoreNotFound: o.ignoreNotFound });
        for (const t of r.deleted) out(`${ref(t.kind, t.namespace, t.name)} deleted`);
      });
    });
}

/**
 * Documents of files, for delete -f: references need not resolve, but an
 * import is converted (against the store's services) to learn what it names.
 */
function targetsOfFiles(paths: string[], services: Service[]): DeleteTarget[] {
  const docs = loadPoliciesOrThrow(readPolicySources(paths), { checkReferences: false, services });
  return docs.map((d) => ({ kind: d.document.kind, namespace: d.document.metadata.namespace, name: d.document.metadata.name }));
}

function diffOf(e: ApplyEntry): string[] {
  const after = toYaml([e.after]).trimEnd();
  if (!e.before) return after.split('\n').map((l) => `+ ${l}`);
  return lineDiff(toYaml([e.before]).trimEnd(), after);
}

function table(docs: PolicyDocument[]): string {
  if (docs.length === 0) return 'No documents found.';
  const rows: string[][] = [['KIND', 'NAMESPACE', 'NAME', 'DETAIL']];
  for (const d of docs) {
    const detail = d.kind === 'Service'
      ? `${d.spec.type} ${d.spec.type === 'ExternalName' ? d.spec.externalName : d.spec.clusterIP ?? '<pending>'} ${d.spec.ports.map((p) => `${p.port}/${p.protocol}`).join(',') || '-'}`
      : `service=${d.spec.service} subsets=${d.spec.subsets.map((s) => s.name).join(',') || '-'} routes=${d.spec.routes.length}`;
    rows.push([d.kind, d.metadata.namespace, d.metadata.name, detail]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ')).join('\n');
}
