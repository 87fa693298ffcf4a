"""The watchdog: lazily unmounts our mount point if the daemon dies without cleaning up (SIGKILL, OOM).

Role: started by the supervisor BEFORE it opens /dev/fuse (so it never holds the connection), double-forked
(nobody's child to reap). While it waits it is a tiny `sh` blocked in `read` on a pipe, not a copy of the
Python supervisor: a forked Python process would add ~14 MB of RSS to the daemon for a process that only
waits. The supervisor writes "dev=MAJ:MIN" once mounted and "clean" on a clean shutdown; when the pipe
closes without "clean" (the supervisor died), the shell execs `python -m pylxcfs.fuse.watchdog MNT WORDS...`,
which unmounts MNT only if it is still OUR mount (type fuse.lxcfs, same device): a later daemon's live
mount at the same place is never touched. The mfusepy back-end (fuse/mfuse.py) starts one too, the same way.
"""

from __future__ import annotations

import logging
import os
import sys

from pylxcfs.fuse import mountpoint

log = logging.getLogger(__name__)

FSTYPE = "fuse.lxcfs"
SH = "/bin/sh"
# argv[0] of the shell names the process (tests and the benchmark find it by this name and the mount point);
# in the script $0 is the Python to run the check with and $1 the mount point. fd 3 is the pipe from the
# supervisor.
_SCRIPT = r"""trap '' INT HUP
words=
while read -r line <&3; do words="$words $line"; done
exec 3<&-
case " $words " in *" clean "*) exit 0 ;; esac
case "$words" in *dev=*) ;; *) exit 0 ;; esac
exec "$0" -m pylxcfs.fuse.watchdog "$1" $words
"""
NAME = "pylxcfs-watchdog"


def start_watchdog(mnt: str) -> int:
    """Start the watchdog for `mnt`; returns the write end of its pipe (write "dev=..." then "clean")."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(wfd)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.chdir("/")
            os.dup2(rfd, 3)
            if rfd != 3:
                os.close(rfd)
            os.execv(SH, [NAME, "-c", _SCRIPT, sys.executable, mnt])
        except BaseException:
            log.exception("watchdog failed to start")
        finally:
            os._exit(1)
    os.close(rfd)
    os.waitpid(pid, 0)
    return wfd


def finish(mnt: str, words: list[str]) -> int:
    """The supervisor died: lazily unmount `mnt` if it is still the mount it made (same device)."""
    dev = next((w[4:] for w in words if w.startswith("dev=")), None)
    if "clean" in words or dev is None:
        return 0
    entry = mountpoint.mount_at(mnt)
    if entry is None or entry.fstype != FSTYPE or entry.dev != dev:
        return 0
    try:
        mountpoint.lazy_unmount(mnt)
    except OSError as e:
        now = mountpoint.mount_at(mnt)
        if now is None or now.dev != dev:  # unmounted meanwhile (the mfusepy back-end's fusermount3 too)
            return 0
        log.error("watchdog: could not unmount %s: %s", mnt, e)
        return 1
    log.warning("watchdog: the daemon died; lazily unmounted %s", mnt)
    return 0


def main(argv: list[str]) -> int:
    """`python -m pylxcfs.fuse.watchdog MNT WORD...` (run by the watchdog shell only)."""
    logging.basicConfig(level=logging.INFO, format="pylxcfs[%(process)d]: %(message)s")
    if not argv:
        return 2
    return finish(argv[0], argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
