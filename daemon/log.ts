// One pino logger for every strata process: structured JSON, quiet by default.
import pino from 'pino';

export type Logger = pino.Logger;

/** Keys pino writes on every line itself; a caller's field of the same name would repeat the key. */
const RESERVED = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);

/** Each key once per line: a field that collides with one of pino's own is renamed ctx_<key>. */
function uniqueKeys(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const k of Object.keys(obj)) {
    if (!RESERVED.has(k)) continue;
    out ??= { ...obj };
    delete out[k];
    out[`ctx_${k}`] = obj[k];
  }
  return out ?? obj;
}

/** Level from STRATA_LOG_LEVEL (default warn); destination STRATA_LOG_FILE or stderr. */
export function createLogger(name: string, opts: { level?: string; file?: string } = {}): Logger {
  const level = opts.level ?? process.env.STRATA_LOG_LEVEL ?? 'warn';
  const file = opts.file ?? process.env.STRATA_LOG_FILE;
  const dest = pino.destination({ dest: file ?? 2, sync: true, mkdir: file !== undefined });
  return pino({ name, level, formatters: { log: uniqueKeys } }, dest);
}
