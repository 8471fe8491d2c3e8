/** Every example and every YAML block of policies/README.md validates; schema.json is current. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatIssue } from '../../policies/errors';
import { renderJsonSchema, SCHEMA_FILE } from '../../policies/json-schema';
import { loadPolicies, readPolicySources } from '../../policies/load';
import type { Service } from '../../policies/model';
import { examplesDir, repo } from './util';

const examples = fs.readdirSync(examplesDir).filter((f) => /\.ya?ml$/.test(f)).sort();

test('there are examples for reviews, ratings, SMI and HTTPRoute', () => {
  assert.deepEqual(examples, ['httproute.yaml', 'ratings.yaml', 'reviews.yaml', 'smi-trafficsplit.yaml']);
});

for (const f of examples) {
  test(`example ${f} validates on its own`, () => {
    const r = loadPolicies(readPolicySources([path.join(examplesDir, f)]));
    assert.deepEqual(r.issues.map(formatIssue), []);
    assert.ok(r.documents.length >= 2);
  });
}

test('the examples validate together as one apply set', () => {
  const r = loadPolicies(readPolicySources([examplesDir]));
  assert.deepEqual(r.issues.map(formatIssue), []);
});

test('every YAML block of policies/README.md validates', () => {
  const readme = fs.readFileSync(path.join(repo, 'policies', 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```yaml\n([\s\S]*?)^```/gm)].map((m) => m[1]);
  assert.ok(blocks.length >= 4, `found ${blocks.length} yaml blocks`);
  // Blocks may refer to Services defined in other blocks, as a reader applies them in turn.
  const all = loadPolicies(blocks.map((text, i) => ({ file: `README block ${i + 1}`, text })), { checkReferences: false });
  const services = all.documents.map((d) => d.document).filter((d): d is Service => d.kind === 'Service');
  blocks.forEach((text, i) => {
    const r = loadPolicies([{ file: `README.md block ${i + 1}`, text }], { services });
    assert.deepEqual(r.issues.map(formatIssue), [], `block ${i + 1}`);
    assert.ok(r.documents.length > 0);
  });
});

test('policies/schema.json is what the zod schema generates', () => {
  const shipped = fs.readFileSync(SCHEMA_FILE, 'utf8');
  assert.equal(shipped, renderJsonSchema(), 'stale: run `node dist/policies/json-schema.js --write`');
  const schema = JSON.parse(shipped);
  const titles = (schema.anyOf as Array<{ title: string }>).map((s) => s.title);
  assert.deepEqual(titles, ['Service', 'TrafficPolicy', 'TrafficSplit (SMI, imported)', 'HTTPRoute (Gateway API, mesh form, imported)']);
  // Editors need the closed objects to flag typos as users type.
  const tp = schema.anyOf[1];
  assert.equal(tp.additionalProperties, false);
  assert.equal(tp.properties.spec.additionalProperties, false);
});

test('policies/README.md documents every field of Service and TrafficPolicy', () => {
  const readme = fs.readFileSync(path.join(repo, 'policies', 'README.md'), 'utf8');
  const schema = JSON.parse(renderJsonSchema());
  const fields = new Set<string>();
  const walk = (s: any): void => {
    if (!s || typeof s !== 'object') return;
    if (s.properties) for (const [k, v] of Object.entries(s.properties)) { fields.add(k); walk(v); }
    for (const k of ['items', 'anyOf', 'oneOf', 'allOf', 'additionalProperties']) {
      const v = s[k];
      if (Array.isArray(v)) v.forEach(walk); else walk(v);
    }
  };
  walk(schema.anyOf[0]);
  walk(schema.anyOf[1]);
  assert.ok(fields.size > 60, `${fields.size} fields`);
  const undocumented = [...fields].filter((f) => !new RegExp(`\`[\\w.\\[\\]]*\\b${f}\\b`).test(readme));
  assert.deepEqual(undocumented, []);
});
