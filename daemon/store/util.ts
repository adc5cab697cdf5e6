// Small helpers shared by the repositories.

export function nowIso(): string {
  return new Date().toISOString();
}

export function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null || text === '') return fallback;
  return JSON.parse(text) as T;
}

export const HEX_RE = /^[0-9a-f]+$/;

/** "name" -> "name:latest"; a ':' before the last '/' is a registry port, not a tag. */
export function normalizeRef(ref: string): string {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (ref.includes('@')) return ref;
  return colon > slash ? ref : `${ref}:latest`;
}
