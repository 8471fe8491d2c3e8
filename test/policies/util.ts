/** Shared helpers of the policies tests. */
import * as path from 'node:path';
import { formatIssue, type PolicyIssue } from '../../policies/errors';
import { loadPolicies, type PolicyContext } from '../../policies/load';
import type { PolicyDocument } from '../../policies/model';

export const repo = path.resolve(__dirname, '..', '..', '..');
export const examplesDir = path.join(repo, 'policies', 'examples');

/** Loads YAML text; fails the test with every issue if it is not valid. */
export function load(text: string, ctx: PolicyContext = {}, file = 't.yaml'): PolicyDocument[] {
  const r = loadPolicies([{ file, text }], ctx);
  if (r.issues.length > 0) throw new Error(`unexpected issues:\n${r.issues.map(formatIssue).join('\n')}`);
  return r.documents.map((d) => d.document);
}

export function issuesOf(text: string, ctx: PolicyContext = {}, file = 't.yaml'): PolicyIssue[] {
  return loadPolicies([{ file, text }], ctx).issues;
}

export const SERVICE = `apiVersion: meshwork.dev/v1
kind: Service
metadata:
  name: reviews
spec:
  selector:
    app: reviews
  ports:
    - name: http
      port: 9080
`;

/** A TrafficPolicy document for `reviews` with `spec` lines appended (indented by the caller). */
export const policy = (spec: string, name = 'reviews') => `apiVersion: meshwork.dev/v1
kind: TrafficPolicy
metadata:
  name: ${name}
spec:
  service: reviews
${spec}`;

export const withService = (...docs: string[]) => [SERVICE, ...docs].join('---\n');
