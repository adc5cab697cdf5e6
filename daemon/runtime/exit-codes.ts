// Docker's exit codes for a process that never started: 127 when the command was not found,
// 126 when it was found but could not be executed (not executable, a directory, bad format).

/**
 * The exit code for runc's error record (its `--log` file, JSON lines with a `msg`) when runc failed
 * to start the process, else undefined (runc ran it: its exit code stands).
 */
export function startFailureCode(runcLog: string): number | undefined {
  for (const line of runcLog.split('\n')) {
    let msg: unknown;
    try {
      msg = (JSON.parse(line) as { msg?: unknown }).msg;
    } catch {
      continue;
    }
    if (typeof msg !== 'string' || !/unable to start container process: exec: /.test(msg)) continue;
    if (/executable file not found|no such file or directory/.test(msg)) return 127;
    return 126;
  }
  return undefined;
}
