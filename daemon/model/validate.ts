// Names and references: the rules Docker applies, with errors that name the rule.
import { invalid } from './errors';

const NAME_RULE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RULE = /^[\w][\w.-]{0,127}$/;
const HOST_RULE = /^[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::\d+)?$/;

/** Container and volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters. */
export function checkName(kind: 'container' | 'volume', name: string): string {
  if (name.length === 0 || name.length > 128 || !NAME_RULE.test(name)) {
    throw invalid(`invalid ${kind} name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, up to 128 characters`);
  }
  return name;
}

export interface ParsedRef {
  name: string;
  tag: string;
}

/** Parses name[:tag] (tag defaults to latest) and checks Docker's reference grammar. */
export function parseRef(ref: string): ParsedRef {
  if (ref.includes('@')) throw invalid(`invalid reference "${ref}": digests are not supported, use name[:tag]`);
  // A name that reads as an image id or digest could never be told apart from one (nor removed by name).
  if (/^sha256:/i.test(ref) || /^[0-9a-f]{64}(:|$)/i.test(ref)) {
    throw invalid(`invalid reference "${ref}": it looks like an image id or digest; a name cannot be sha256:<hex> or 64 hex digits`);
  }
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  const hasTag = colon > slash;
  const name = hasTag ? ref.slice(0, colon) : ref;
  const tag = hasTag ? ref.slice(colon + 1) : 'latest';
  if (name.length === 0 || name.length > 255) throw invalid(`invalid reference "${ref}": the name must be 1 to 255 characters`);
  const parts = name.split('/');
  const first = parts.length > 1 && (parts[0].includes('.') || parts[0].includes(':') || parts[0] === 'localhost') ? parts.shift()! : null;
  if (first !== null && !HOST_RULE.test(first)) throw invalid(`invalid reference "${ref}": bad registry host "${first}"`);
  for (const p of parts) {
    if (!REPO_COMPONENT.test(p)) {
      throw invalid(
        `invalid reference "${ref}": repository name components must be lowercase letters, digits and separators (. _ __ -), got "${p}"`,
      );
    }
  }
  if (!TAG_RULE.test(tag)) throw invalid(`invalid reference "${ref}": tag "${tag}" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  return { name, tag };
}

export function formatRef(r: ParsedRef): string {
  return `${r.name}:${r.tag}`;
}

/** A reference checked against Docker's grammar, with its tag made explicit: "busybox" -> "busybox:latest". */
export function canonicalRef(ref: string): string {
  return formatRef(parseRef(ref));
}

/**
 * The looser form for lookups of whatever the user typed (which may be an id or a digest, so it is
 * not checked): "name" -> "name:latest"; a ':' before the last '/' is a registry port, not a tag.
 */
export function normalizeRef(ref: string): string {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (ref.includes('@')) return ref;
  return colon > slash ? ref : `${ref}:latest`;
}

/** An absolute container path without `..`. */
export function checkContainerPath(p: string, what: string): string {
  checkHostPath(p, what);
  if (!p.startsWith('/')) throw invalid(`${what} "${p}" must be an absolute path`);
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) throw invalid(`${what} "${p}" must not contain ".."`);
  return '/' + parts.join('/');
}

/** A path the kernel can take: no NUL byte, at most PATH_MAX. */
export function checkHostPath(p: string, what: string): string {
  if (p.includes('\0')) throw invalid(`${what} must not contain a NUL byte`);
  if (Buffer.byteLength(p) >= 4096) throw invalid(`${what} is longer than PATH_MAX (4096 bytes)`);
  return p;
}
