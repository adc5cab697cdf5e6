// The Dockerfile parser (daemon/builder/dockerfile.ts): lines, continuations, comments, flags, exec
// forms, word splitting, quoting and variable substitution, as docker build reads them. Pure.
import t from 'tap';
import { DockerfileError, parseDockerfile, parseKeyValuePairs, processWord, processWords } from '../../daemon/builder/dockerfile';

const vars = (m: Record<string, string>) => (k: string) => m[k];

t.test('keywords are case-insensitive and kept upper-case, with their 1-based line', async (t) => {
  const ins = parseDockerfile('from busybox\n\nrun echo hi\n');
  t.same(ins.map((i) => [i.keyword, i.rest, i.line]), [['FROM', 'busybox', 1], ['RUN', 'echo hi', 3]]);
});

t.test('a backslash continues a line; comment and empty lines inside a continuation are skipped', async (t) => {
  const ins = parseDockerfile('FROM x\nRUN echo a \\\n# a comment\n\n  b\n');
  t.equal(ins[1].rest, 'echo a   b');
  t.equal(ins[1].line, 2);
});

t.test('flags before the arguments are split off (COPY --chown, RUN --network)', async (t) => {
  const [, copy] = parseDockerfile('FROM x\nCOPY --chown=1:2 --from=b a /b\n');
  t.same(copy.flags, { chown: '1:2', from: 'b' });
  t.equal(copy.rest, 'a /b');
});

t.test('a JSON array is the exec form; anything else the shell form', async (t) => {
  const [, exec, shell] = parseDockerfile('FROM x\nCMD ["sh", "-c", "echo"]\nCMD [not json\n');
  t.same(exec.json, ['sh', '-c', 'echo']);
  t.equal(shell.json, null);
});

t.test('an unknown instruction names its line', async (t) => {
  t.throws(() => parseDockerfile('FROM x\nFOO bar\n', 'Dockerfile'), new DockerfileError('Dockerfile:2: unknown instruction: FOO'));
});

t.test('FROM must come first (ARG may precede it), and be there at all', async (t) => {
  t.ok(parseDockerfile('ARG V=1\nFROM x:${V}\n'));
  t.throws(() => parseDockerfile('RUN x\nFROM y\n'), /RUN before FROM/);
  t.throws(() => parseDockerfile('# only a comment\n'), /no FROM instruction/);
});

t.test('an instruction without arguments is refused', async (t) => {
  t.throws(() => parseDockerfile('FROM x\nRUN\n'), /RUN requires at least one argument/);
});

t.test('words: unquoted whitespace splits, quotes group and are removed', async (t) => {
  t.same(processWords(`a  "b c" 'd e'f`, vars({})), ['a', 'b c', 'd ef']);
});

t.test('variables: $V and ${V}; single quotes keep them literal; a backslash escapes', async (t) => {
  const v = vars({ V: 'x y' });
  t.same(processWords('$V', v), ['x y'], 'a substituted value is not split again');
  t.equal(processWord('${V}z', v), 'x yz');
  t.equal(processWord("'$V'", v), '$V');
  t.equal(processWord('\\$V', v), '$V');
  t.equal(processWord('"a\\"b"', v), 'a"b');
});

t.test('${V:-w} and ${V-w}: a default for unset (and, with the colon, empty)', async (t) => {
  t.equal(processWord('${U:-w}', vars({})), 'w');
  t.equal(processWord('${E:-w}', vars({ E: '' })), 'w');
  t.equal(processWord('${E-w}', vars({ E: '' })), '');
});

t.test('${V:+w} and ${V+w}: the word when set (and, with the colon, not empty)', async (t) => {
  t.equal(processWord('${S:+w}', vars({ S: '1' })), 'w');
  t.equal(processWord('${E:+w}', vars({ E: '' })), '');
  t.equal(processWord('${E+w}', vars({ E: '' })), 'w');
});

t.test('unbalanced quotes and braces are errors that quote the text', async (t) => {
  t.throws(() => processWords('"abc', vars({})), /matching double-quote/);
  t.throws(() => processWords("'abc", vars({})), /matching single-quote/);
  t.throws(() => processWords('${abc', vars({})), /missing '}'/);
});

t.test('KEY=VALUE pairs, and the legacy "KEY VALUE" form of ENV', async (t) => {
  t.same(parseKeyValuePairs('A=1 B="two words"', vars({}), 'ENV'), [['A', '1'], ['B', 'two words']]);
  t.same(parseKeyValuePairs('A one two', vars({}), 'ENV'), [['A', 'one two']]);
  t.same(parseKeyValuePairs('NAME', vars({}), 'ARG'), [['NAME', '\u0000']], 'an ARG without default');
  t.throws(() => parseKeyValuePairs('A', vars({}), 'ENV'), /needs a value/);
});
