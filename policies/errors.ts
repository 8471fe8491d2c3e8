/** The errors of policies/: one class per failure, each with a stable code. */
import { MeshworkError } from '../lib/errors';

/** One problem in a policy file, located precisely. */
export interface PolicyIssue {
  file: string;
  line: number;
  column: number;
  /** Field path inside the document, e.g. `spec.routes[0].backends[1].weight`; "" for the document itself. */
  path: string;
  message: string;
}

export function formatIssue(i: PolicyIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.path ? `${i.path}: ` : ''}${i.message}`;
}

/** Documents failed validation; `issues` lists every problem found. */
export class PolicyValidationError extends MeshworkError {
  constructor(readonly issues: PolicyIssue[]) {
    super('EPOLICYINVALID', `${issues.length} error${issues.length === 1 ? '' : 's'} in policy documents:\n${issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`);
  }
}

/** A document named on the command line does not exist in the store. */
export class PolicyNotFoundError extends MeshworkError {
  constructor(what: string, detail = '') { super('EPOLICYNOTFOUND', `${what} not found${detail}`); }
}

/** The store kept changing under a transaction, or a delete would leave a dangling reference. */
export class PolicyConflictError extends MeshworkError {
  constructor(message: string) { super('EPOLICYCONFLICT', message); }
}

/** A path or argument given to a command cannot be used. */
export class PolicyInputError extends MeshworkError {
  constructor(message: string, options?: { cause?: unknown }) { super('EPOLICYINPUT', message, options); }
}
