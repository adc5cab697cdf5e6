// strata-holder: keeps the /dev/fuse fd of every mount stratad serves, so that a crash, stop or
// upgrade of stratad leaves the mounts alive (their requests wait in the kernel); the next stratad
// gets the fds back and resumes serving. It does nothing else: no SQLite, no union logic, no
// request is ever read here. One synchronous loop over epoll; it exits when it keeps nothing and
// no client has been connected for a while. See README, "stratad: mounts that outlive the daemon".
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { MAX_MESSAGE, closeQuietly, receiveMessage, sendMessage, type HolderReply, type HolderRequest } from './protocol';

/** With nothing kept and no client, the holder exits after this long. */
const IDLE_EXIT_MS = 2_000;

interface Kept {
  fd: number;
  state: string;
}

function main(): void {
  const socketPath = process.argv[2];
  if (!socketPath) {
    process.stderr.write('usage: strata-holder SOCKET\n');
    process.exit(2);
  }
  // Signals that would end a daemon by accident (a closed terminal, ^C to its group) are ignored.
  process.on('SIGHUP', () => undefined);
  process.on('SIGINT', () => undefined);
  process.on('SIGPIPE', () => undefined);

  const listenFd = native.seqpacketSocket();
  fs.rmSync(socketPath, { force: true });
  native.bindUnix(listenFd, socketPath);
  fs.chmodSync(socketPath, 0o600);
  const ownIno = fs.statSync(socketPath).ino;
  native.listen(listenFd, 64);

  const ep = native.epollCreate();
  if (ep < 0) throw new Error(`epoll_create1 failed: errno ${-ep}`);
  native.epollCtl(ep, native.EPOLL_CTL_ADD, listenFd, native.EPOLLIN);
  const clients = new Set<number>();
  const kept = new Map<string, Kept>();
  const keyOfFd = new Map<number, string>();
  const buf = Buffer.alloc(MAX_MESSAGE);
  const events = Buffer.alloc(64 * 8);

  const forget = (key: string) => {
    const k = kept.get(key);
    if (!k) return;
    native.epollCtl(ep, native.EPOLL_CTL_DEL, k.fd, 0);
    closeQuietly(k.fd);
    kept.delete(key);
    keyOfFd.delete(k.fd);
  };

  const dropClient = (fd: number) => {
    native.epollCtl(ep, native.EPOLL_CTL_DEL, fd, 0);
    closeQuietly(fd);
    clients.delete(fd);
  };

  const reply = (fd: number, r: HolderReply, fds: number[] = []) => {
    if (sendMessage(fd, r, fds) < 0) dropClient(fd);
  };

  const handle = (client: number, req: HolderRequest, fds: number[]) => {
    const ok: HolderReply = { op: 'ok', pid: process.pid, entries: 0 };
    switch (req.op) {
      case 'hello':
        break;
      case 'put': {
        if (typeof req.key !== 'string' || typeof req.state !== 'string' || fds.length !== 1) {
          for (const fd of fds) closeQuietly(fd);
          return reply(client, { op: 'error', message: 'put needs a key, a state and one fd' });
        }
        forget(req.key);
        const fd = fds[0];
        kept.set(req.key, { fd, state: req.state });
        keyOfFd.set(fd, req.key);
        // No events asked: only EPOLLERR/EPOLLHUP, when the connection is aborted or unmounted.
        native.epollCtl(ep, native.EPOLL_CTL_ADD, fd, 0);
        break;
      }
      case 'del':
        forget(String(req.key));
        break;
      case 'list': {
        for (const fd of fds) closeQuietly(fd);
        for (const [key, k] of kept) reply(client, { op: 'entry', key, state: k.state }, [k.fd]);
        return reply(client, { op: 'end', count: kept.size });
      }
      default:
        for (const fd of fds) closeQuietly(fd);
        return reply(client, { op: 'error', message: `unknown request ${JSON.stringify((req as { op?: unknown }).op)}` });
    }
    if (req.op !== 'put') for (const fd of fds) closeQuietly(fd);
    reply(client, { ...ok, entries: kept.size });
  };

  for (;;) {
    const idle = kept.size === 0 && clients.size === 0;
    const n = native.epollWait(ep, events, idle ? IDLE_EXIT_MS : -1);
    if (n === 0 && kept.size === 0 && clients.size === 0) break;
    for (let i = 0; i < n; i++) {
      const mask = events.readUInt32LE(i * 8);
      const fd = events.readInt32LE(i * 8 + 4);
      if (fd === listenFd) {
        const c = native.accept4(listenFd);
        if (c >= 0) {
          clients.add(c);
          native.epollCtl(ep, native.EPOLL_CTL_ADD, c, native.EPOLLIN);
        }
      } else if (clients.has(fd)) {
        const m = receiveMessage<HolderRequest>(fd, buf);
        if (m === null || (typeof m === 'number' && m !== -11)) dropClient(fd);
        else if (typeof m !== 'number') handle(fd, m.msg, m.fds);
      } else if (keyOfFd.has(fd) && mask & (native.EPOLLERR | native.EPOLLHUP)) {
        forget(keyOfFd.get(fd)!); // the mount is gone: nothing left to keep
      }
    }
  }
  closeQuietly(listenFd);
  // A holder started after this one closed its socket may have bound the same path: leave that one.
  if (fs.statSync(socketPath, { throwIfNoEntry: false })?.ino === ownIno) fs.rmSync(socketPath, { force: true });
}

main();
