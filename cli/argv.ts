// The command line of a command whose options are declared as data (its `builder` is an options
// object, as yargs also takes it), parsed without yargs: loading and building yargs' command tree
// costs more than the commonest commands (ps, images, inspect) take to run. Anything this parser
// is not sure of (--help, an unknown or repeated flag, a bad value, missing arguments) returns
// undefined, and the caller lets yargs parse it, so yargs stays the one source of usage errors.
import type { Options } from 'yargs';
import type { Args, Cmd } from './commands/common';

/** The options every command takes (main.ts declares the same to yargs). */
export const GLOBAL_OPTIONS: Record<string, Options> = { socket: { type: 'string' } };

interface Positional {
  name: string;
  required: boolean;
  variadic: boolean;
}

/** The positionals of a command string: 'inspect <containers..>' -> [{containers, required, variadic}]. */
export function positionals(command: string): Positional[] {
  return [...command.matchAll(/([<[])([\w-]+)(\.\.)?[>\]]/g)].map((m) => ({ name: m[2], required: m[1] === '<', variadic: m[3] !== undefined }));
}

const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The command words a command answers to: its own and its aliases. */
export function commandWords(c: Cmd): string[] {
  const own = typeof c.command === 'string' ? c.command.split(' ')[0] : '';
  return [own, ...(typeof c.aliases === 'string' ? [c.aliases] : (c.aliases ?? []))].filter((w) => w !== '');
}

/**
 * argv as yargs would give it to `c`'s handler (each option under its name, camelCase name and
 * aliases; defaults applied), or undefined when yargs should parse these `args` itself.
 * `words` are the command words already matched (argv._).
 */
export function parseDeclared(c: Cmd, words: string[], args: string[]): Args | undefined {
  if (typeof c.command !== 'string' || typeof c.builder !== 'object' || c.builder === null) return undefined;
  const specs: Record<string, Options> = { ...GLOBAL_OPTIONS, ...(c.builder as Record<string, Options>) };
  const byFlag = new Map<string, string>();
  for (const [name, o] of Object.entries(specs)) {
    if (o.type !== 'string' && o.type !== 'boolean') return undefined;
    byFlag.set(name.length === 1 ? `-${name}` : `--${name}`, name);
    for (const a of typeof o.alias === 'string' ? [o.alias] : (o.alias ?? [])) byFlag.set(a.length === 1 ? `-${a}` : `--${a}`, name);
  }
  const values = new Map<string, string | boolean>();
  const rest: string[] = [];
  const set = (name: string, v: string | boolean): boolean => {
    const o = specs[name];
    if (values.has(name)) return false; // repeated: yargs decides (array or last wins)
    if (o.choices && !(o.choices as unknown[]).includes(v)) return false;
    values.set(name, v);
    return true;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      rest.push(...args.slice(i + 1));
      break;
    }
    if (a === '-') return undefined; // yargs reads a lone "-" its own way (as an empty string)
    if (!a.startsWith('-')) {
      rest.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const flags = a.startsWith('--') || eq >= 0 ? [eq >= 0 ? a.slice(0, eq) : a] : [...a.slice(1)].map((ch) => `-${ch}`);
    for (const [k, flag] of flags.entries()) {
      const name = byFlag.get(flag);
      if (name === undefined) return undefined;
      const last = k === flags.length - 1;
      if (specs[name].type === 'boolean') {
        const v = eq >= 0 ? a.slice(eq + 1) : 'true';
        if ((v !== 'true' && v !== 'false') || !set(name, v === 'true')) return undefined;
      } else {
        const v = eq >= 0 ? a.slice(eq + 1) : last ? args[++i] : undefined;
        if (v === undefined || (eq < 0 && v.startsWith('-') && v !== '-') || !set(name, v)) return undefined;
      }
    }
  }
  const out: Args = { _: words, $0: 'strata' };
  for (const [name, o] of Object.entries(specs)) {
    const v = values.has(name) ? values.get(name) : o.default;
    if (v === undefined) continue;
    for (const key of new Set([name, camel(name), ...(typeof o.alias === 'string' ? [o.alias] : (o.alias ?? []))])) out[key] = v;
  }
  for (const p of positionals(c.command)) {
    if (p.variadic) {
      if (p.required && rest.length === 0) return undefined;
      if (rest.length) out[p.name] = rest.splice(0);
    } else if (rest.length) out[p.name] = rest.shift();
    else if (p.required) return undefined;
  }
  return rest.length ? undefined : out;
}
