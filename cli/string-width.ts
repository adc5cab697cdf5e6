// Stand-in for the string-width package in the CLI bundle only (Makefile: esbuild --alias), so that
// `strata` starts fast: string-width builds an Intl.Segmenter and Unicode-property regexes when it
// loads (~30 ms, paid by every command). yargs and cliui measure mostly plain ASCII, counted here;
// anything else goes to the real package, loaded the first time it is needed.
import { createRequire } from 'node:module';

let real: ((s: string, options?: object) => number) | undefined;

export default function stringWidth(s: string, options?: object): number {
  if (/^[\x20-\x7e]*$/.test(s)) return s.length;
  if (real === undefined) {
    // Resolved as yargs resolves it (a path esbuild cannot see, so the real one stays out of the bundle).
    const fromYargs = createRequire(require.resolve('yargs/package.json'));
    const mod = fromYargs(['string', 'width'].join('-')) as { default: typeof real };
    real = mod.default;
  }
  return real!(s, options);
}
