// The failover journal (daemon/fuse/journal.ts) read back: lookup counts, hard-link aliases,
// renames that keep both, a snapshot, a torn tail, and a journal of an earlier build (no counts).
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Journal } from '../../daemon/fuse/journal';
import { makeWorkspace } from '../lib/workspace';

const INIT = { minor: 45, passthrough: false, posixAcl: false, writebackCache: true };

t.test('lookup counts and aliases', async (t) => {
  const file = path.join(makeWorkspace(t, 'journal'), 'j');
  const j = new Journal(file);
  j.init(INIT);
  j.node(2, 1, 'a', 100);
  j.lookup(2);
  j.lookup(2);
  j.lookup(2);
  j.forget(2, 2);
  j.alias(2, 1, 'b');
  j.alias(2, 3, 'c');
  j.unalias(2, 1, 'b');
  j.node(2, 3, 'moved', 100); // a rename keeps the count and the other names
  j.node(4, 1, 'gone', 101);
  j.lookup(4);
  j.drop(4);
  j.close();
  const s = Journal.read(file);
  t.equal(s.lookupsKnown, true);
  t.same([...s.nodes.keys()], [2]);
  t.same(s.nodes.get(2), { parent: 3, name: 'moved', ino: 100, detached: false, lookups: 1, aliases: [{ parent: 3, name: 'c' }] });
});

t.test('a snapshot sets the count; a torn record at the end is ignored', async (t) => {
  const file = path.join(makeWorkspace(t, 'journal'), 'j');
  const j = new Journal(file);
  j.init(INIT);
  j.node(7, 1, 'x', 5);
  j.lookups(7, 42);
  j.lookup(7);
  j.close();
  fs.appendFileSync(file, Buffer.from([40, 0, 0, 0, 8, 7])); // a LOOKUP cut short
  t.equal(Journal.read(file).nodes.get(7)?.lookups, 43);
});

t.test('a journal of an earlier build: counts unknown', async (t) => {
  const file = path.join(makeWorkspace(t, 'journal'), 'j');
  // INIT as an earlier build wrote it: flags without the lookups bit.
  const rec = Buffer.alloc(10);
  rec.writeUInt32LE(10, 0);
  rec[4] = 1;
  rec.writeUInt32LE(45, 5);
  rec[9] = 1;
  fs.writeFileSync(file, rec);
  const j = new Journal(file);
  j.node(2, 1, 'a', 100);
  j.close();
  const s = Journal.read(file);
  t.equal(s.lookupsKnown, false);
  t.equal(s.init?.passthrough, true);
});

t.test("a request's records are staged and written at once; an intent is written before its request runs", async (t) => {
  const file = path.join(makeWorkspace(t, 'journal'), 'j');
  const j = new Journal(file);
  const size = () => fs.statSync(file).size;
  j.init(INIT);
  for (let id = 2; id < 1002; id++) {
    j.node(id, 1, `f${id}`, id + 100);
    j.lookup(id);
  }
  t.equal(size(), 0, 'a thousand nodes handed out: nothing written before the flush');
  j.flush();
  const written = size();
  t.equal(Journal.read(file).nodes.size, 1000, 'one flush writes them all');
  j.forget(2, 1);
  j.intent(7, 0, 9);
  t.ok(size() > written, 'the intent goes to the file at once, with what was staged before it');
  const s = Journal.read(file);
  t.same(s.intent, { lo: 7, hi: 0, opcode: 9 });
  t.equal(s.nodes.get(2)?.lookups, 0, 'the record staged before the intent is in the file');
  j.node(5000, 1, 'late', 1);
  j.close();
  t.ok(Journal.read(file).nodes.has(5000), 'closing writes what is staged');
});

t.test('a compaction keeps what was staged; a large request is written in pieces', async (t) => {
  const file = path.join(makeWorkspace(t, 'journal'), 'j');
  const j = new Journal(file);
  const live = new Map<number, string>();
  j.setSnapshotSource({ write: (s) => live.forEach((name, id) => s.node(id, 1, name, id, false)), live: () => live.size });
  j.init(INIT);
  for (let id = 2; id < 10_002; id++) {
    live.set(id, `name-${id}`);
    j.node(id, 1, `name-${id}`, id);
  }
  t.ok(fs.statSync(file).size > 0 && fs.statSync(file).size < 10_000 * 40, 'past 64 KiB staged, it is written (memory stays bounded)');
  j.node(20_000, 1, 'staged', 1); // staged at the compaction, and not live: the snapshot leaves it out
  j.compact();
  j.node(20_001, 1, 'after', 1);
  j.close();
  const s = Journal.read(file);
  t.equal(s.nodes.size, 10_001, 'the snapshot and the record after it');
  t.equal(s.init?.minor, 45);
  t.ok(s.nodes.has(20_001) && !s.nodes.has(20_000), 'the snapshot is the live state; records after it are kept');
});
