// Presentation helpers: aligned tables, docker-style sizes and relative times, --mount/--label parsing.
import { humanSize } from '../daemon/model/units';
import type { MountSpec } from '../daemon/model/types';

/** A bad command-line value (reported like a usage error: exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

function width(s: string): number {
  return [...s].length;
}

/**
 * Columns as wide as their widest cell, 3 spaces between columns, no trailing spaces
 * (docker's tabwriter output without the 10-column minimum).
 */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => width(r[i] ?? ''))));
  return all
    .map((r) =>
      headers
        .map((_, i) => {
          const cell = r[i] ?? '';
          return i === headers.length - 1 ? cell : cell + ' '.repeat(widths[i] - width(cell) + 3);
        })
        .join('')
        .trimEnd(),
    )
    .join('\n');
}


/** go-units HumanDuration: "Less than a second", "About a minute", "3 hours", "2 weeks", ... */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(ms / 60000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3600000);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3600000 / 24 / 365)} years`;
}

/** "5 minutes ago" for an ISO 8601 timestamp. */
export function ago(iso: string, now: number = Date.now()): string {
  const t = Date.parse(iso);
  if (!iso || Number.isNaN(t)) return 'N/A';
  return `${humanDuration(now - t)} ago`;
}

/** "sha256:abcdef..." -> "abcdef012345" (12 hex chars). Non-hex strings (names, "<missing>") pass through. */
export function shortId(id: string): string {
  const hex = id.startsWith('sha256:') ? id.slice(7) : id;
  return /^[0-9a-f]{13,}$/.test(hex) ? hex.slice(0, 12) : hex;
}

/** Truncate to n characters ending in "…" (docker's stringutils.Ellipsis). */
export function ellipsis(s: string, n: number): string {
  const chars = [...s];
  if (chars.length <= n) return s;
  return chars.slice(0, n - 1).join('') + '…';
}

/** A long path cut in its middle to fit n characters ("/var/lib/strata/co…4b1c/merged"): both ends tell most. */
export function shortPath(p: string, n = 40): string {
  const chars = [...p];
  if (chars.length <= n) return p;
  const tail = Math.floor((n - 1) / 2);
  return chars.slice(0, n - 1 - tail).join('') + '…' + chars.slice(-tail).join('');
}

/** "repo/name:tag" -> ["repo/name", "tag"]; a ':' before the last '/' is a registry port. */
export function splitRef(ref: string): [string, string] {
  const at = ref.indexOf('@');
  if (at >= 0) return [ref.slice(0, at), '<none>'];
  const colon = ref.lastIndexOf(':');
  if (colon > ref.lastIndexOf('/')) return [ref.slice(0, colon), ref.slice(colon + 1)];
  return [ref, 'latest'];
}

function parseBool(field: string, v: string | undefined, spec: string): boolean {
  if (v === undefined) return true;
  switch (v.toLowerCase()) {
    case '':
    case '1':
    case 'true':
      return true;
    case '0':
    case 'false':
      return false;
  }
  throw new UsageError(`invalid --mount "${spec}": invalid value for ${field}: "${v}" (expected true or false)`);
}

/**
 * Parse a docker --mount value: comma-separated key=value fields
 * type=volume|bind, source|src=..., target|destination|dst=..., readonly|ro[=true|false].
 * type defaults to volume (as in docker); a volume without source is anonymous.
 */
export function parseMount(spec: string): MountSpec {
  let type: MountSpec['type'] | undefined;
  let source = '';
  let target: string | undefined;
  let readonly = false;
  const bad = (why: string) => new UsageError(`invalid --mount "${spec}": ${why}`);
  for (const field of spec.split(',')) {
    if (field.trim() === '') continue;
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? undefined : field.slice(eq + 1);
    switch (key) {
      case 'type':
        if (value !== 'volume' && value !== 'bind') {
          throw bad(`invalid type "${value ?? ''}" (expected volume or bind)`);
        }
        type = value;
        break;
      case 'source':
      case 'src':
        if (value === undefined) throw bad(`field "${key}" needs a value (${key}=...)`);
        source = value;
        break;
      case 'target':
      case 'destination':
      case 'dst':
        if (value === undefined || value === '') throw bad(`field "${key}" needs a value (${key}=/path)`);
        target = value;
        break;
      case 'readonly':
      case 'ro':
        readonly = parseBool(key, value, spec);
        break;
      default:
        throw bad(`unknown field "${key}" (expected type, source|src, target|destination|dst, readonly|ro)`);
    }
  }
  type ??= 'volume';
  if (target === undefined) throw bad('missing field "target" (target=/path inside the container)');
  if (!target.startsWith('/')) throw bad(`target "${target}" must be an absolute path`);
  if (type === 'bind' && source === '') throw bad('missing field "source" (a bind mount needs source=/host/path)');
  if (type === 'bind' && !source.startsWith('/')) throw bad(`bind source "${source}" must be an absolute path`);
  return { type, source, target, readonly };
}

/** ["a=1", "b"] -> {a: "1", b: ""} for --label / --opt. */
export function parseKeyValues(flag: string, items: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    const k = eq < 0 ? item : item.slice(0, eq);
    if (k === '') throw new UsageError(`invalid --${flag} "${item}": expected key=value`);
    out[k] = eq < 0 ? '' : item.slice(eq + 1);
  }
  return out;
}

/** Pretty JSON as printed by inspect and --format json. */
export function json(v: unknown): string {
  return JSON.stringify(v, null, 2);
}

export { humanSize };
