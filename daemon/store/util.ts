// Small helpers shared by the repositories.

export function nowIso(): string {
  return new Date().toISOString();
}

export function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null || text === '') return fallback;
  return JSON.parse(text) as T;
}

export const HEX_RE = /^[0-9a-f]+$/;

