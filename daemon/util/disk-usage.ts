// Bytes used by a directory tree (apparent file sizes, hard links counted once).
import * as fs from 'node:fs';

export function diskUsage(dir: string): number {
  let total = 0;
  const seen = new Set<string>();
  const walk = (p: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(p, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const child = `${p}/${e.name}`;
      if (e.isDirectory()) {
        walk(child);
        continue;
      }
      const st = fs.lstatSync(child, { throwIfNoEntry: false });
      if (st === undefined) continue;
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        if (seen.has(key)) continue;
        seen.add(key);
      }
      total += st.size;
    }
  };
  walk(dir);
  return total;
}
