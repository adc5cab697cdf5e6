// The union's trash (daemon/union/trash.ts): removed directories moved into the work dir are
// emptied a bounded number of entries at a time, whatever they hold. Real files, milliseconds.
import t from 'tap';
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { Trash } from '../../daemon/union/trash';
import { S_IFCHR } from '../../daemon/util/file-mode';
import { makeWorkspace } from '../lib/workspace';

/** A directory of `n` whiteouts (char 0/0, as a removed merged directory holds), plus `extra`. */
function removedDir(dir: string, n: number, extra: (dir: string) => void = () => undefined): string {
  fs.mkdirSync(dir);
  for (let i = 0; i < n; i++) native.mknod(`${dir}/w${i}`, S_IFCHR, 0, 0);
  extra(dir);
  return dir;
}

t.test('drains at most the budget per call, in order, and ends empty', (t) => {
  const ws = makeWorkspace(t, 'trash');
  const trash = new Trash();
  t.ok(trash.empty);
  const a = removedDir(`${ws}/a`, 50);
  const b = removedDir(`${ws}/b`, 5);
  trash.add(a);
  trash.add(b);
  t.notOk(trash.empty);
  trash.drain(20);
  t.equal(fs.readdirSync(a).length, 30, '20 of a\'s entries removed');
  t.ok(fs.existsSync(b), 'b waits for a');
  trash.drain(30);
  t.notOk(fs.existsSync(a), 'a removed with its last entry');
  t.equal(fs.readdirSync(b).length, 5, 'b untouched');
  trash.drain(2);
  t.equal(fs.readdirSync(b).length, 3, 'then b, as far as the budget goes');
  trash.drain();
  t.notOk(fs.existsSync(b), 'b removed');
  t.ok(trash.empty);
  t.end();
});

t.test('copes with subdirectories, plain files, and paths already gone', (t) => {
  const ws = makeWorkspace(t, 'trash');
  const trash = new Trash();
  const d = removedDir(`${ws}/d`, 3, (dir) => {
    fs.mkdirSync(`${dir}/sub/deeper`, { recursive: true });
    fs.writeFileSync(`${dir}/sub/deeper/f`, 'x');
    fs.writeFileSync(`${dir}/plain`, 'y');
  });
  fs.writeFileSync(`${ws}/file`, 'z');
  trash.add(d);
  trash.add(`${ws}/file`);
  trash.add(`${ws}/never-there`);
  trash.drain();
  t.same(fs.readdirSync(ws), [], 'everything removed');
  t.ok(trash.empty);
  t.end();
});
