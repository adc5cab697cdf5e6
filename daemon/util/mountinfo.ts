// /proc/self/mountinfo, parsed: one place that knows its fields and its octal escapes
// (space, tab, newline and backslash in paths are written as \040, \011, \012, \134).
import * as fs from 'node:fs';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  /** Kernel device number of the mounted filesystem (for FUSE: the connection number). */
  dev: number;
}

export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The entries of a mountinfo text; lines that are not entries are skipped. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (f.length < 5 || sep < 0) continue;
    const [major, minor] = f[2].split(':').map(Number);
    out.push({ mountPoint: unescapeMountField(f[4]), fsType: f[sep + 1] ?? '', source: unescapeMountField(f[sep + 2] ?? ''), dev: major * 2 ** 20 + minor });
  }
  return out;
}

/** This mount namespace's mount table. */
export function readMountinfo(): MountEntry[] {
  return parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
}
