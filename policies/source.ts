/**
 * YAML text to documents that remember where every field came from. Each
 * `---` document (or each item of a `kind: List`) becomes a SourceDocument
 * whose `locate(path)` gives the line and column of a field, so every error
 * can name file:line:col.
 */
import * as YAML from 'yaml';
import type { PolicyIssue } from './errors';

export type FieldPath = ReadonlyArray<string | number>;

export interface SourceDocument {
  file: string;
  /** The plain value (what the schemas validate). */
  value: unknown;
  /** Where the document starts. */
  line: number;
  column: number;
  /** Path prefix inside the YAML document (["items", 2] for a List item). */
  prefix: FieldPath;
  /** Line and column of the field at `path`, or of its nearest present ancestor. `key` prefers the key over the value. */
  locate(path: FieldPath, key?: boolean): { line: number; column: number };
}

/** `spec.routes[0].backends[1].weight` */
export function formatPath(path: FieldPath): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : String(seg);
  return out;
}

export function parseYamlFile(file: string, text: string): { documents: SourceDocument[]; issues: PolicyIssue[] } {
  const lineCounter = new YAML.LineCounter();
  const docs = YAML.parseAllDocuments(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true });
  const documents: SourceDocument[] = [];
  const issues: PolicyIssue[] = [];
  const at = (offset: number) => { const p = lineCounter.linePos(offset); return { line: p.line, column: p.col }; };
  if (!Array.isArray(docs)) return { documents, issues }; // an empty stream

  for (const doc of docs) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) issues.push({ file, ...at(e.pos[0]), path: '', message: `invalid YAML: ${firstLine(e.message)}` });
      continue;
    }
    const root = doc.contents;
    if (root === null || (YAML.isScalar(root) && root.value === null)) continue; // empty document, e.g. a trailing ---

    const make = (node: YAML.Node, prefix: FieldPath): SourceDocument => {
      const start = node.range ? at(node.range[0]) : { line: 1, column: 1 };
      return {
        file, value: node.toJS(doc), ...start, prefix,
        locate: (path, key = false) => locateIn(doc, node, path, key, at) ?? start,
      };
    };
    const js = root.toJS(doc) as Record<string, unknown> | null;
    // `policy get -o json` prints a List; accept it back.
    if (YAML.isMap(root) && js && js.kind === 'List' && Array.isArray(js.items)) {
      const items = root.get('items', true);
      if (YAML.isSeq(items)) items.items.forEach((item, i) => { if (YAML.isNode(item)) documents.push(make(item, ['items', i])); });
      continue;
    }
    documents.push(make(root, []));
  }
  return { documents, issues };
}

function firstLine(s: string): string { return s.split('\n')[0]; }

function locateIn(doc: YAML.Document, root: YAML.Node, path: FieldPath, key: boolean, at: (o: number) => { line: number; column: number }) {
  let node: unknown = root;
  let best: YAML.Range | undefined = root.range ?? undefined;
  for (let i = 0; i < path.length; i++) {
    if (YAML.isAlias(node)) node = node.resolve(doc);
    const seg = path[i];
    const last = i === path.length - 1;
    if (YAML.isMap(node)) {
      const pair = node.items.find((p) => (YAML.isScalar(p.key) ? p.key.value : p.key) === seg);
      if (!pair) break;
      if (last && key && YAML.isNode(pair.key) && pair.key.range) return at(pair.key.range[0]);
      if (YAML.isNode(pair.value) && pair.value.range) best = pair.value.range;
      else if (YAML.isNode(pair.key) && pair.key.range) best = pair.key.range; // `field:` with no value
      node = pair.value;
    } else if (YAML.isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      node = node.items[seg];
      if (YAML.isNode(node) && node.range) best = node.range;
    } else break;
  }
  return best ? at(best[0]) : undefined;
}
