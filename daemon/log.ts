// One pino logger for every strata process: structured JSON, quiet by default.
import pino from 'pino';

export type Logger = pino.Logger;

/** Level from STRATA_LOG_LEVEL (default warn); destination STRATA_LOG_FILE or stderr. */
export function createLogger(name: string, opts: { level?: string; file?: string } = {}): Logger {
  const level = opts.level ?? process.env.STRATA_LOG_LEVEL ?? 'warn';
  const file = opts.file ?? process.env.STRATA_LOG_FILE;
  const dest = pino.destination({ dest: file ?? 2, sync: true, mkdir: file !== undefined });
  return pino({ name, level }, dest);
}
