// Lexical normalization of member names and containment checks for the extraction destination.
import * as fs from 'node:fs';
import { UnsafeArchiveError } from './errors';
import { lstatNode } from './fsnode';

/**
 * Normalizes a member name lexically: leading '/' and './' stripped, empty and '.' components dropped,
 * a trailing '/' ignored. Returns the components ([] = the archive root). Any '..' component refuses
 * the whole archive.
 */
export function normalizeMember(name: string, member = name): string[] {
  if (name.includes('\0')) throw new UnsafeArchiveError(member, 'name contains a NUL byte');
  const comps = name.split('/').filter((c) => c !== '' && c !== '.');
  if (comps.includes('..')) throw new UnsafeArchiveError(member, "path contains a '..' component");
  return comps;
}

/**
 * Tracks which directories under the destination are verified real directories (never symlinks),
 * creating missing ones. The cache is dropped for anything the extraction removes.
 */
export class DestTree {
  private verified = new Set<string>();

  constructor(readonly root: string) {}

  abs(rel: string): string {
    return rel === '' ? this.root : this.root + '/' + rel;
  }

  /**
   * Makes sure comps[0..n-1] are real directories inside root: missing ones are created (0755),
   * a symlink or any other non-directory in a parent position refuses the member.
   * With create=false nothing is created and false is returned when a component is missing.
   */
  ensureDirs(comps: string[], n: number, member: string, create = true): boolean {
    let rel = '';
    for (let i = 0; i < n; i++) {
      rel = rel === '' ? comps[i] : rel + '/' + comps[i];
      if (this.verified.has(rel)) continue;
      const abs = this.abs(rel);
      const st = lstatNode(abs);
      if (st === null) {
        if (!create) return false;
        fs.mkdirSync(abs, 0o755);
        fs.chmodSync(abs, 0o755);
      } else if (st.type === 'symlink') {
        throw new UnsafeArchiveError(member, `parent '${rel}' is a symbolic link`);
      } else if (st.type !== 'dir') {
        throw new UnsafeArchiveError(member, `parent '${rel}' is not a directory`);
      }
      this.verified.add(rel);
    }
    return true;
  }

  markDir(rel: string): void {
    this.verified.add(rel);
  }

  /** Forgets rel and everything below it (after removing it). */
  forget(rel: string): void {
    const prefix = rel + '/';
    for (const k of this.verified) if (k === rel || k.startsWith(prefix)) this.verified.delete(k);
  }
}
