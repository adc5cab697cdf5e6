// Dockerfile syntax: lines, comments, continuations, instructions with their
// flags, JSON (exec) forms, and variable substitution ($VAR, ${VAR}, ${VAR:-x}, ${VAR:+x}).

export class DockerfileError extends Error {}

export interface Instruction {
  /** Upper-case keyword: RUN, COPY, ... */
  keyword: string;
  /** Everything after the keyword (continuations joined), flags included. */
  raw: string;
  /** Text after the --flags. */
  rest: string;
  flags: Record<string, string>;
  /** Parsed JSON array when `rest` is one (exec form). */
  json: string[] | null;
  /** 1-based line where the instruction starts. */
  line: number;
  /** The instruction as written, on one line (for messages). */
  original: string;
}

export const KEYWORDS = new Set([
  'FROM',
  'RUN',
  'CMD',
  'LABEL',
  'MAINTAINER',
  'EXPOSE',
  'ENV',
  'ADD',
  'COPY',
  'ENTRYPOINT',
  'VOLUME',
  'USER',
  'WORKDIR',
  'ARG',
  'ONBUILD',
  'STOPSIGNAL',
  'HEALTHCHECK',
  'SHELL',
]);

function parseJsonArray(s: string): string[] | null {
  const t = s.trim();
  if (!t.startsWith('[')) return null;
  try {
    const v = JSON.parse(t) as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // not JSON: shell form
  }
  return null;
}

/** Splits leading `--name=value` flags off an instruction's arguments. */
function splitFlags(args: string): { flags: Record<string, string>; rest: string } {
  const flags: Record<string, string> = {};
  let rest = args;
  for (;;) {
    const m = /^--([A-Za-z][A-Za-z0-9-]*)(?:=(\S*))?\s*/.exec(rest);
    if (!m) break;
    flags[m[1].toLowerCase()] = m[2] ?? 'true';
    rest = rest.slice(m[0].length);
  }
  return { flags, rest };
}

/** Parses a Dockerfile; `name` prefixes error messages ("Dockerfile:3: ..."). */
export function parseDockerfile(text: string, name = 'Dockerfile'): Instruction[] {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const out: Instruction[] = [];
  const escape = '\\';
  let i = 0;
  while (i < lines.length) {
    const startLine = i + 1;
    let line = lines[i++];
    if (/^\s*#/.test(line) || line.trim() === '') continue;
    let joined = '';
    for (;;) {
      const trimmed = line.replace(/\s+$/, '');
      if (trimmed.endsWith(escape)) {
        joined += trimmed.slice(0, -1);
        // Comment and empty lines inside a continuation are skipped.
        while (i < lines.length && (/^\s*#/.test(lines[i]) || lines[i].trim() === '')) i++;
        if (i >= lines.length) break;
        line = lines[i++];
        continue;
      }
      joined += line;
      break;
    }
    const m = /^\s*(\S+)\s*([\s\S]*)$/.exec(joined);
    if (!m) continue;
    const keyword = m[1].toUpperCase();
    if (!KEYWORDS.has(keyword)) throw new DockerfileError(`${name}:${startLine}: unknown instruction: ${m[1]}`);
    const raw = m[2].trim();
    const { flags, rest } = ['COPY', 'ADD', 'RUN', 'FROM', 'HEALTHCHECK'].includes(keyword) ? splitFlags(raw) : { flags: {}, rest: raw };
    if (raw === '' && keyword !== 'HEALTHCHECK') throw new DockerfileError(`${name}:${startLine}: ${keyword} requires at least one argument`);
    out.push({ keyword, raw, rest, flags, json: parseJsonArray(rest), line: startLine, original: `${keyword} ${raw}`.trim() });
  }
  if (!out.some((x) => x.keyword === 'FROM')) throw new DockerfileError(`${name}: no FROM instruction: a Dockerfile must start with FROM`);
  const firstReal = out.find((x) => x.keyword !== 'ARG');
  if (firstReal && firstReal.keyword !== 'FROM') {
    throw new DockerfileError(`${name}:${firstReal.line}: ${firstReal.keyword} before FROM: the first instruction must be FROM (or ARG)`);
  }
  return out;
}

export type Vars = (name: string) => string | undefined;

/**
 * Shell-like word processing with variable substitution: quotes are removed
 * ('...' literal, "..." with substitution), `\` escapes the next character,
 * unquoted whitespace separates words (when `split`).
 */
export function processWords(s: string, vars: Vars, split = true): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  const n = s.length;
  const sub = (): string => {
    // at s[i] === '$'
    const next = s[i + 1];
    if (next === '{') {
      const close = s.indexOf('}', i + 2);
      if (close < 0) throw new DockerfileError(`missing '}' in "${s}"`);
      const body = s.slice(i + 2, close);
      i = close + 1;
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([\s\S]*))?$/.exec(body);
      if (!m) throw new DockerfileError(`bad substitution: \${${body}}`);
      const v = vars(m[1]);
      if (m[2] === undefined) return v ?? '';
      const word = processWords(m[3], vars, false)[0] ?? '';
      switch (m[2]) {
        case ':-':
          return v === undefined || v === '' ? word : v;
        case '-':
          return v === undefined ? word : v;
        case ':+':
          return v !== undefined && v !== '' ? word : '';
        default: // '+'
          return v !== undefined ? word : '';
      }
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i + 1));
    if (!m) {
      i++;
      return '$';
    }
    i += 1 + m[0].length;
    return vars(m[0]) ?? '';
  };
  while (i < n) {
    const c = s[i];
    if (split && /\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === '\\') {
      if (i + 1 < n) cur += s[i + 1];
      i += 2;
    } else if (c === "'") {
      const close = s.indexOf("'", i + 1);
      if (close < 0) throw new DockerfileError(`unexpected end of statement while looking for matching single-quote in "${s}"`);
      cur += s.slice(i + 1, close);
      i = close + 1;
    } else if (c === '"') {
      i++;
      while (i < n && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < n && ['"', '\\', '$'].includes(s[i + 1])) {
          cur += s[i + 1];
          i += 2;
        } else if (s[i] === '$') cur += sub();
        else cur += s[i++];
      }
      if (i >= n) throw new DockerfileError(`unexpected end of statement while looking for matching double-quote in "${s}"`);
      i++;
    } else if (c === '$') {
      cur += sub();
    } else {
      cur += c;
      i++;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** One word, quotes removed and variables substituted (WORKDIR, USER, FROM, ...). */
export function processWord(s: string, vars: Vars): string {
  return processWords(s, vars, false)[0] ?? '';
}

/**
 * KEY=VALUE pairs (ENV, LABEL, ARG), or the legacy `KEY VALUE` form
 * (`legacy`, ENV and LABEL only when there is no `=` in the first word).
 */
export function parseKeyValuePairs(s: string, vars: Vars, keyword: string): [string, string][] {
  const first = /^\S+/.exec(s)?.[0] ?? '';
  if (!first.includes('=')) {
    const rest = s.slice(first.length).trim();
    if (keyword === 'ARG') return [[first, '\u0000']]; // no default
    if (rest === '') throw new DockerfileError(`${keyword} ${first} needs a value: ${keyword} ${first}=VALUE`);
    return [[processWord(first, vars), processWords(rest, vars, false)[0] ?? '']];
  }
  const out: [string, string][] = [];
  for (const w of processWords(s, vars)) {
    const eq = w.indexOf('=');
    if (eq <= 0) {
      if (keyword === 'ARG') {
        out.push([w, '\u0000']);
        continue;
      }
      throw new DockerfileError(`${keyword} names can not be blank and need a value: "${w}" should be KEY=VALUE`);
    }
    out.push([w.slice(0, eq), w.slice(eq + 1)]);
  }
  return out;
}
