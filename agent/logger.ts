/** The small logger interface components take; the CLI provides a JSON-lines one. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** One JSON object per line on `out`; `debug` only when asked for. */
export function jsonLogger(component: string, out: NodeJS.WritableStream = process.stderr, debug = false): Logger {
  const emit = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    const f = fields ? Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, v instanceof Error ? v.message : v])) : {};
    out.write(`${JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...f })}\n`);
  };
  return { debug: debug ? emit('debug') : () => {}, info: emit('info'), warn: emit('warn'), error: emit('error') };
}
