/**
 * Base class for every error meshwork raises on purpose. `code` is stable and
 * machine-readable; the edge (plugin exit, DNS reply, proxy response, CLI)
 * decides how to show it. Wrap with context on the way up and keep the cause.
 */
export class MeshworkError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Adds context ("bridge mw0: ...") to an error while keeping it inspectable. */
export function withContext(context: string, err: unknown): Error {
  if (err instanceof MeshworkError) {
    const wrapped = new MeshworkError(err.code, `${context}: ${err.message}`, { cause: err });
    Object.assign(wrapped, { name: err.name });
    return wrapped;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new MeshworkError('EINTERNAL', `${context}: ${msg}`, { cause: err });
}
