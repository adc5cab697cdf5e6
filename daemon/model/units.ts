// Sizes as docker prints them (decimal units: 512B, 4.1kB, 1.23MB), shared by the
// daemon's progress lines and the CLI's tables.
const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
/** Docker's units.HumanSize: three significant digits, decimal units. */
export function humanSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return 'N/A';
  let n = bytes;
  let u = 0;
  while (n >= 1000 && u < UNITS.length - 1) {
    n /= 1000;
    u++;
  }
  let s = Number(n.toPrecision(3));
  if (s >= 1000 && u < UNITS.length - 1) {
    // 999999B rounds to 1000kB: show 1MB instead
    s = Number((n / 1000).toPrecision(3));
    u++;
  }
  return `${s}${UNITS[u]}`;
}
