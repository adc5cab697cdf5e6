// What a JSON.parse failure may say: where, never the text around it (which may be a file's content).

/** " at byte N" for a JSON.parse SyntaxError that names a position, else "". */
export function jsonErrorWhere(err: unknown): string {
  const m = /position (\d+)/.exec(err instanceof Error ? err.message : '');
  return m ? ` at byte ${m[1]}` : '';
}
