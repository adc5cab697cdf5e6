// Requests a dead server may have carried out without answering come back after a takeover
// (FUSE_NOTIFY_RESEND). Running one again must not fail because its own first run already did
// the work: a resent MKDIR finds its directory made, an UNLINK its name gone. These tables say
// which requests get an intent journaled before they run (so a resent one is recognised as the
// one in flight at the crash), and which errors of such a resent request mean "already done".
import * as os from 'node:os';
import { Op } from './protocol';

const E = os.constants.errno;

/** The in-flight bit the kernel sets in `unique` of a resent request (FUSE_UNIQUE_RESEND, bit 63), in the high word. */
export const RESEND_BIT_HI = 0x80000000;

/** Requests whose second run can fail where the first succeeded. */
export function isMutating(op: number): boolean {
  switch (op) {
    case Op.MKDIR:
    case Op.MKNOD:
    case Op.SYMLINK:
    case Op.LINK:
    case Op.CREATE:
    case Op.UNLINK:
    case Op.RMDIR:
    case Op.RENAME:
    case Op.RENAME2:
    case Op.SETXATTR:
    case Op.REMOVEXATTR:
      return true;
    default:
      return false;
  }
}

/**
 * How to answer a resent request, in flight at the crash, that failed with `errno`: as done
 * ('empty': a plain success; 'entry': the entry it made, looked up; 'create': that file, opened;
 * 'renamed': success if the target exists), or null when the error stands.
 */
export function alreadyDone(op: number, errno: number): 'empty' | 'entry' | 'create' | 'renamed' | null {
  switch (op) {
    case Op.MKDIR:
    case Op.MKNOD:
    case Op.SYMLINK:
    case Op.LINK:
      return errno === E.EEXIST ? 'entry' : null;
    case Op.CREATE:
      return errno === E.EEXIST ? 'create' : null;
    case Op.UNLINK:
    case Op.RMDIR:
      return errno === E.ENOENT ? 'empty' : null;
    case Op.RENAME:
    case Op.RENAME2:
      return errno === E.ENOENT ? 'renamed' : null;
    case Op.SETXATTR:
      return errno === E.EEXIST ? 'empty' : null; // XATTR_CREATE
    case Op.REMOVEXATTR:
      return errno === E.ENODATA ? 'empty' : null;
    default:
      return null;
  }
}
