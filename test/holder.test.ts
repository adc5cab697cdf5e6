// The fd holder (daemon/holder/strata-holder.c) on its own: it keeps fds with their state and hands
// them back, forgets one whose other end is gone, answers every malformed message with an error
// and goes on, and exits when it keeps nothing and nobody is connected.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../native-shims';
import { HolderClient } from '../daemon/holder/client';
import { MAX_MESSAGE } from '../daemon/holder/protocol';
import { alive } from './lib/mount-union';
import { makeWorkspace } from './lib/workspace';

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw connection to the holder, for messages the client would never send. */
function rawRequest(sock: string, bytes: Buffer, fds: number[] = []): { op: number; text: string } {
  const s = native.seqpacketSocket();
  try {
    if (native.connectUnix(s, sock) !== 0) throw new Error('cannot connect to the holder');
    if (native.sendmsgFds(s, bytes, bytes.length, fds) < 0) throw new Error('send failed');
    const buf = Buffer.alloc(4096);
    const r = native.recvmsgFds(s, buf);
    if (typeof r === 'number') throw new Error(`recv failed: ${r}`);
    for (const fd of r[1]) fs.closeSync(fd);
    return { op: r[0] >= 16 ? buf.readUInt32LE(0) : -1, text: buf.toString('utf8', 16, r[0]) };
  } finally {
    fs.closeSync(s);
  }
}

function header(op: number, keyLen: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(op, 0);
  h.writeUInt32LE(keyLen, 4);
  return h;
}

t.test('keeps fds, hands them back, refuses what is malformed, exits when idle', async (t) => {
  const ws = makeWorkspace(t, 'holder');
  const sock = path.join(ws, 'holder.sock');
  const holder = HolderClient.connect(sock);
  const pid = holder.pid;
  t.teardown(() => {
    holder.close();
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  t.ok(pid > 0, 'the holder answers with its pid');
  t.equal(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'strata-holder', 'a process of its own, not node');
  t.equal(fs.statSync(sock).mode & 0o777, 0o600, 'its socket is 0600');

  const [r1, w1] = native.pipe2();
  const [r2, w2] = native.pipe2();
  holder.put('a', 'first', r1);
  holder.put('b', '{"state":"b"}', r2);
  holder.put('a', 'second', r1); // replaces
  fs.closeSync(r1);
  fs.closeSync(r2);
  let kept = holder.list();
  t.same(kept.map((k) => [k.key, k.state]).sort(), [['a', 'second'], ['b', '{"state":"b"}']], 'list: every key once, with its latest state');
  const a = kept.find((k) => k.key === 'a')!;
  fs.writeSync(w1, 'through the holder');
  const got = Buffer.alloc(64);
  t.equal(got.toString('utf8', 0, fs.readSync(a.fd, got)), 'through the holder', 'the fd handed back is the one kept');
  for (const k of kept) fs.closeSync(k.fd);

  // Malformed messages: each gets an error, the holder goes on.
  const ERROR = 17;
  t.equal(rawRequest(sock, Buffer.from('abc')).op, ERROR, 'a message shorter than its header');
  t.equal(rawRequest(sock, Buffer.concat([header(2, 1000), Buffer.from('k')]), [w2]).op, ERROR, 'a key longer than the message');
  t.equal(rawRequest(sock, Buffer.concat([header(2, 1), Buffer.from('kstate')])).op, ERROR, 'a put without an fd');
  t.equal(rawRequest(sock, header(1, 0), [w2]).op, ERROR, 'a hello with an fd');
  t.equal(rawRequest(sock, header(3, 0)).op, ERROR, 'a del without a key');
  t.match(rawRequest(sock, header(99, 0)), { op: ERROR, text: /unknown request/ }, 'an unknown request');
  const s = native.seqpacketSocket();
  t.equal(native.connectUnix(s, sock), 0);
  const huge = Buffer.alloc(MAX_MESSAGE + 1);
  header(1, 0).copy(huge);
  t.ok(native.sendmsgFds(s, huge, huge.length, []) < 0, 'a message past the largest is refused on the way');
  fs.closeSync(s);
  t.ok(holder.alive(), 'the holder still answers');
  t.equal(holder.list().length, 2, 'and still keeps both');

  // The other end of a kept fd goes away (as an unmounted FUSE connection does): it is forgotten.
  fs.closeSync(w2);
  for (let i = 0; i < 50 && holder.list().some((k) => (fs.closeSync(k.fd), k.key === 'b')); i++) await delay(20);
  t.same(
    holder.list().map((k) => (fs.closeSync(k.fd), k.key)),
    ['a'],
    'a kept fd whose connection ended is let go',
  );

  holder.del('a');
  fs.closeSync(w1);
  t.same(holder.list(), [], 'del forgets');
  holder.close();
  for (let i = 0; i < 100 && alive(pid); i++) await delay(50);
  t.notOk(alive(pid), 'keeping nothing, with nobody connected, it exits');
  t.notOk(fs.existsSync(sock), 'and removes its socket');
});
