// The subset of Go's text/template that `docker --format` users write: {{.Field}}, field paths
// ({{.Config.Env}}), {{json .}} / {{json .Field}}, {{upper}}/{{lower}}/{{join .List ","}}, literal text,
// and docker's `table` prefix (a header row, columns aligned). Values print as Go prints them.
import { table, UsageError } from './format';

type Piece = { text: string } | { fn: string; args: string[] };

/** Go's fmt of a value: lists as [a b], maps as map[k:v], nothing as <no value>. */
function goString(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(goString).join(' ')}]`;
  if (typeof v === 'object') {
    const keys = Object.keys(v as object).sort();
    return `map[${keys.map((k) => `${k}:${goString((v as Record<string, unknown>)[k])}`).join(' ')}]`;
  }
  return String(v);
}

function lookup(dot: unknown, path: string): unknown {
  if (path === '.') return dot;
  let v: unknown = dot;
  for (const key of path.slice(1).split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

const FUNCS: Record<string, (args: unknown[]) => string> = {
  json: ([v]) => JSON.stringify(v ?? null),
  upper: ([v]) => goString(v).toUpperCase(),
  lower: ([v]) => goString(v).toLowerCase(),
  join: ([v, sep]) => (Array.isArray(v) ? v.map(goString).join(String(sep ?? '')) : goString(v)),
  len: ([v]) => String(Array.isArray(v) ? v.length : v && typeof v === 'object' ? Object.keys(v).length : goString(v).length),
};

function parse(format: string): Piece[] {
  const pieces: Piece[] = [];
  const re = /\{\{-?\s*(.*?)\s*-?\}\}/g;
  let last = 0;
  for (let m = re.exec(format); m; m = re.exec(format)) {
    if (m.index > last) pieces.push({ text: format.slice(last, m.index) });
    last = re.lastIndex;
    const words = m[1].match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? [];
    const [head, ...rest] = words;
    if (head === undefined) throw new UsageError(`invalid --format template "${format}": empty action`);
    if (head.startsWith('.')) {
      if (rest.length) throw new UsageError(`invalid --format template "${format}": unexpected "${rest[0]}" after ${head}`);
      pieces.push({ fn: '', args: [head] });
    } else if (FUNCS[head] !== undefined) {
      if (rest.length === 0) throw new UsageError(`invalid --format template "${format}": ${head} needs an argument`);
      pieces.push({ fn: head, args: rest });
    } else throw new UsageError(`invalid --format template "${format}": function "${head}" not defined`);
  }
  if (format.slice(last).includes('{{')) throw new UsageError(`invalid --format template "${format}": unclosed action`);
  if (last < format.length) pieces.push({ text: format.slice(last) });
  return pieces;
}

function arg(dot: unknown, a: string): unknown {
  if (a.startsWith('"')) return JSON.parse(a) as string;
  return lookup(dot, a);
}

/** A compiled --format: render(item) for one item; a `table` format also has its header. */
export interface Template {
  isTable: boolean;
  render(dot: unknown): string;
  header(names: Record<string, string>): string;
}

export function compile(format: string): Template {
  let body = format.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  const isTable = /^table(\s|$)/.test(body);
  if (isTable) body = body.replace(/^table\s*/, '');
  const pieces = parse(body);
  const render = (dot: unknown) =>
    pieces
      .map((p) => {
        if ('text' in p) return p.text;
        const vals = p.args.map((a) => arg(dot, a));
        return p.fn === '' ? goString(vals[0]) : FUNCS[p.fn](vals);
      })
      .join('');
  // docker's header: each field's column name (upper-cased field name when it has none).
  const header = (names: Record<string, string>) =>
    pieces
      .map((p) => ('text' in p ? p.text : (names[p.args[p.args.length - 1].slice(1)] ?? p.args[p.args.length - 1].slice(1).toUpperCase())))
      .join('');
  return { isTable, render, header };
}

/** Items printed with a template; a `table` template gets a header and tab-separated columns aligned. */
export function renderAll(format: string, items: unknown[], names: Record<string, string>): string {
  const tpl = compile(format);
  if (!tpl.isTable) return items.map((i) => tpl.render(i)).join('\n');
  const rows = [tpl.header(names), ...items.map((i) => tpl.render(i))].map((l) => l.split('\t'));
  return table(rows[0], rows.slice(1));
}
