/**
 * One case per class of error: the message names file:line:col, the field
 * path and what was wrong. The expected position is the line marked `#<` and
 * the column of `at` on that line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIssue } from '../../policies/errors';
import { issuesOf, policy, SERVICE, withService } from './util';

interface Case { name: string; yaml: string; at: string; path: string; message: RegExp }

const twoSubsets = '  subsets:\n    - {name: v1, labels: {version: v1}}\n    - {name: v2, labels: {version: v2}}\n';

const CASES: Case[] = [
  { name: 'YAML syntax', yaml: 'apiVersion: meshwork.dev/v1\nkind: Service\nmetadata: {name: x\nspec: {} #<\n', at: 'spec', path: '', message: /invalid YAML/ },
  { name: 'duplicate key', yaml: 'apiVersion: meshwork.dev/v1\nkind: Service\nkind: Service #<\n', at: 'kind', path: '', message: /invalid YAML: Map keys must be unique/ },
  { name: 'unknown field with a suggestion', yaml: withService(policy(`${twoSubsets}  routes:
    - name: split
      backends:
        - subset: v1
          weight: 90
        - subset: v2
          wieght: 10 #<
`)), at: 'wieght', path: 'spec.routes[0].backends[1].wieght', message: /unknown field `wieght`; did you mean `weight`\?/ },
  { name: 'unknown field without a near name', yaml: withService(policy('  bogusfield: 1 #<\n')), at: 'bogusfield', path: 'spec.bogusfield', message: /unknown field `bogusfield`; expected one of `service`, `subsets`/ },
  { name: 'unknown kind', yaml: 'apiVersion: meshwork.dev/v1\nkind: TraficPolicy #<\n', at: 'TraficPolicy', path: 'kind', message: /unknown kind `TraficPolicy`; did you mean `TrafficPolicy`\?/ },
  { name: 'wrong apiVersion', yaml: 'apiVersion: meshwork.dev/v2 #<\nkind: Service\n', at: 'meshwork.dev/v2', path: 'apiVersion', message: /does not define Service; expected meshwork.dev\/v1/ },
  { name: 'wrong type', yaml: withService(policy('  connectionPool:\n    maxConnections: lots #<\n')), at: 'lots', path: 'spec.connectionPool.maxConnections', message: /expected a whole number, got the string "lots"/ },
  { name: 'missing required field', yaml: withService(policy('  routes:\n    - name: r #<\n      matches: []\n')), at: 'name: r', path: 'spec.routes[0].backends', message: /missing required field `backends`/ },
  { name: 'enum value with a suggestion', yaml: withService(policy('  loadBalancer:\n    simple: ROUND_ROBBIN #<\n')), at: 'ROUND_ROBBIN', path: 'spec.loadBalancer.simple', message: /expected one of ROUND_ROBIN, RANDOM, LEAST_REQUEST, EWMA, got the string "ROUND_ROBBIN"; did you mean `ROUND_ROBIN`\?/ },
  { name: 'weights not summing to 100', yaml: withService(policy(`${twoSubsets}  routes:
    - name: split
      backends:
        - subset: v1 #<
          weight: 90
        - subset: v2
          weight: 20
`)), at: '- subset: v1', path: 'spec.routes[0].backends', message: /weights sum to 110; the weights of a route must sum to 100 \(v1 90 \+ v2 20\)/ },
  { name: 'missing weight among several backends', yaml: withService(policy(`${twoSubsets}  routes:
    - name: split
      backends:
        - subset: v1
          weight: 90
        - subset: v2 #<
`)), at: 'subset: v2', path: 'spec.routes[0].backends[1]', message: /missing `weight`/ },
  { name: 'backend subset not defined', yaml: withService(policy(`${twoSubsets}  routes:
    - name: r
      backends:
        - subset: v3 #<
`)), at: 'v3', path: 'spec.routes[0].backends[0].subset', message: /subset `v3` is not defined by this policy \(subsets: `v1`, `v2`\)/ },
  { name: 'mirror subset not defined', yaml: withService(policy(`${twoSubsets}  routes:
    - name: r
      backends: [{subset: v1}]
      mirror: {subset: shadow} #<
`)), at: 'shadow', path: 'spec.routes[0].mirror.subset', message: /subset `shadow` is not defined/ },
  { name: 'service not in the set or the store', yaml: policy('  timeout: 1s\n').replace('service: reviews', 'service: ratings #<'), at: 'ratings', path: 'spec.service', message: /service `ratings` in namespace `default` is neither in this apply set nor in the store/ },
  { name: 'subset contradicting the service selector', yaml: withService(policy('  subsets:\n    - name: v1\n      labels: {app: ratings, version: v1} #<\n')), at: 'ratings', path: 'spec.subsets[0].labels.app', message: /subset `v1` can never match: service `reviews` selects app=reviews/ },
  { name: 'duplicate document', yaml: `${SERVICE}---\n${SERVICE.replace('name: reviews', 'name: reviews #<')}`, at: 'reviews', path: 'metadata.name', message: /duplicate Service `reviews` in namespace `default` \(first at t.yaml:1:1\)/ },
  { name: 'duplicate subset', yaml: withService(policy('  subsets:\n    - {name: v1, labels: {version: v1}}\n    - {name: v1, labels: {version: v2}} #<\n')), at: 'v1', path: 'spec.subsets[1].name', message: /duplicate subset `v1`/ },
  { name: 'duplicate route', yaml: withService(policy('  routes:\n    - {name: r, backends: [{}]}\n    - {name: r, backends: [{}]} #<\n')), at: 'r,', path: 'spec.routes[1].name', message: /duplicate route `r`/ },
  { name: 'duplicate port name', yaml: SERVICE.replace('      port: 9080\n', '      port: 9080\n    - name: http #<\n      port: 9081\n'), at: 'http', path: 'spec.ports[1].name', message: /duplicate port name `http`/ },
  { name: 'duplicate port', yaml: SERVICE.replace('      port: 9080\n', '      port: 9080\n    - name: other\n      port: 9080 #<\n'), at: '9080', path: 'spec.ports[1].port', message: /duplicate port 9080\/TCP/ },
  { name: 'negative duration', yaml: withService(policy('  timeout: -5s #<\n')), at: '-5s', path: 'spec.timeout', message: /duration "-5s" is negative; durations must be greater than zero/ },
  { name: 'zero duration', yaml: withService(policy('  retries: {attempts: 1, perTryTimeout: 0ms} #<\n')), at: '0ms', path: 'spec.retries.perTryTimeout', message: /duration "0ms" is zero/ },
  { name: 'not a duration', yaml: withService(policy('  timeout: 5 #<\n')), at: '5', path: 'spec.timeout', message: /expected a duration string such as 250ms/ },
  { name: 'invalid regex', yaml: withService(policy('  routes:\n    - name: r\n      matches: [{path: {regex: "^/(api"}}] #<\n      backends: [{}]\n')), at: '"^/(api"', path: 'spec.routes[0].matches[0].path.regex', message: /invalid regular expression/ },
  { name: 'canary steps not ascending', yaml: withService(policy(`${twoSubsets}  routes: [{name: r, backends: [{subset: v1}]}]
  canary:
    subset: v2
    stableSubset: v1
    steps: [10, 50, 30, 100] #<
`)), at: '30', path: 'spec.canary.steps[2]', message: /steps must ascend: 30 follows 50/ },
  { name: 'canary not ending at 100', yaml: withService(policy(`${twoSubsets}  routes: [{name: r, backends: [{subset: v1}]}]
  canary:
    subset: v2
    stableSubset: v1
    steps: [10, 50] #<
`)), at: '50', path: 'spec.canary.steps[1]', message: /the last step must be 100/ },
  { name: 'two policies for one service', yaml: withService(policy('  timeout: 1s\n'), policy('  timeout: 2s\n', 'reviews-2').replace('service: reviews', 'service: reviews #<')), at: 'reviews', path: 'spec.service', message: /already has TrafficPolicy `default\/reviews`; one policy per service/ },
  { name: 'label value that is not a string', yaml: SERVICE.replace('app: reviews', 'app: reviews\n    enabled: true #<'), at: 'true', path: 'spec.selector.enabled', message: /expected a string label value \(quote numbers and booleans\), got boolean true/ },
  { name: 'percentage out of range', yaml: withService(policy('  fault: {abort: {httpStatus: 503, percentage: 150}} #<\n')), at: '150', path: 'spec.fault.abort.percentage', message: /must be between 0 and 100/ },
  { name: 'ExternalName without externalName', yaml: 'apiVersion: meshwork.dev/v1\nkind: Service\nmetadata: {name: x}\nspec:\n  type: ExternalName #<\n', at: 'type', path: 'spec', message: /missing `externalName`/ },
  { name: 'option of another choice', yaml: withService(policy('  loadBalancer: {simple: ROUND_ROBIN, choiceCount: 3} #<\n')), at: '3', path: 'spec.loadBalancer.choiceCount', message: /choiceCount applies only to simple: LEAST_REQUEST/ },
  { name: 'two choices where one is allowed', yaml: withService(policy('  routes:\n    - name: r\n      matches: [{path: {exact: /a, prefix: /b}}] #<\n      backends: [{}]\n')), at: '/b', path: 'spec.routes[0].matches[0].path.prefix', message: /set only one of `exact`, `prefix`/ },
  { name: 'cluster IP that is not an address', yaml: SERVICE.replace('spec:\n', 'spec:\n  clusterIP: 10.96.0.300 #<\n'), at: '10.96.0.300', path: 'spec.clusterIP', message: /"10.96.0.300" is not an IP address or "None"/ },
  { name: 'unsupported HTTPRoute filter', yaml: withService(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: reviews}]
  rules:
    - backendRefs: [{name: reviews}]
      filters:
        - type: URLRewrite
          urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /}} #<
`), at: 'urlRewrite', path: 'spec.rules[0].filters[0].urlRewrite', message: /`urlRewrite` is not supported by meshwork; remove it/ },
  { name: 'unsupported SMI matches', yaml: withService(`apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: s}
spec:
  service: reviews
  backends: [{service: reviews, weight: 1}]
  matches: [{kind: HTTPRouteGroup, name: g}] #<
`), at: 'matches', path: 'spec.matches', message: /`matches` is not supported by meshwork/ },
];

function expectedPosition(yaml: string, at: string): { line: number; column: number } {
  const lines = yaml.split('\n');
  const line = lines.findIndex((l) => l.includes('#<'));
  assert.ok(line >= 0, 'case has a #< marker');
  const column = lines[line].indexOf(at);
  assert.ok(column >= 0, `"${at}" on the marked line`);
  return { line: line + 1, column: column + 1 };
}

for (const c of CASES) {
  test(`error: ${c.name}`, () => {
    const issues = issuesOf(c.yaml);
    assert.ok(issues.length > 0, 'the document is refused');
    const hit = issues.find((i) => i.path === c.path && c.message.test(i.message));
    assert.ok(hit, `no issue at ${c.path} matching ${c.message}; got:\n${issues.map(formatIssue).join('\n')}`);
    const want = expectedPosition(c.yaml, c.at);
    assert.equal(`${hit.file}:${hit.line}:${hit.column}`, `t.yaml:${want.line}:${want.column}`, formatIssue(hit));
    const text = formatIssue(hit);
    assert.ok(text.startsWith(`t.yaml:${want.line}:${want.column}: ${c.path ? `${c.path}: ` : ''}`), text);
  });
}

test('every error of a file is listed, not just the first', () => {
  const issues = issuesOf(withService(policy('  timeout: -1s\n  retries: {attempts: -1}\n  loadBalancer: {simple: FASTEST}\n')));
  assert.deepEqual(issues.map((i) => i.path).sort(), ['spec.loadBalancer.simple', 'spec.retries.attempts', 'spec.timeout']);
});

test('a document of a List names its item in the path', () => {
  const issues = issuesOf(`{"apiVersion": "v1", "kind": "List", "items": [${JSON.stringify({ apiVersion: 'meshwork.dev/v1', kind: 'Service', metadata: { name: 'x' }, spec: { clusterIP: 'None', selector: { a: 'b' }, tpye: 'ClusterIP' } })}]}`);
  assert.equal(issues.length, 1);
  assert.equal(issues[0].path, 'items[0].spec.tpye');
  assert.match(issues[0].message, /did you mean `type`\?/);
});
