"""Many container-like processes at once, as root (run with the test venv's python):

    python ctlite.py ROOTFS N MAJ:MIN

forks N children; each enters a private mount namespace, bind-mounts ROOTFS onto itself (a mount at "/", as
engines make it), mounts a tmpfs on ROOTFS/dev holding one block node `ct<i>` for MAJ:MIN, chroots into ROOTFS
and waits. Prints one line per child ("<pid>") once all are set up, then "ready", and lives until stdin closes
or it gets SIGTERM; the children die with it (PR_SET_PDEATHSIG). Nothing is mounted outside the children's own
mount namespaces.
"""

from __future__ import annotations

import os
import signal
import sys

from pylxcfs import syscalls


def child(rootfs: str, i: int, dev: tuple[int, int], wfd: int) -> None:
    try:
        syscalls.set_pdeathsig(signal.SIGKILL)
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        syscalls.mount(rootfs, rootfs, None, syscalls.MS_BIND)
        syscalls.mount("tmpfs", f"{rootfs}/dev", "tmpfs", 0, "mode=755,size=16k")
        os.mknod(f"{rootfs}/dev/ct{i}", 0o600 | 0o060000, os.makedev(*dev))
        os.chroot(rootfs)
        os.chdir("/")
        os.write(wfd, b"k")
    except BaseException as e:  # report and die
        os.write(wfd, f"E{e}\n".encode())
        os._exit(1)
    while True:
        signal.pause()


def main() -> None:
    rootfs, n, devt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    major, minor = (int(x) for x in devt.split(":"))
    pids = []
    for i in range(n):
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            child(rootfs, i, (major, minor), wfd)
        os.close(wfd)
        ack = os.read(rfd, 4096)
        os.close(rfd)
        if ack != b"k":
            print(f"child {i} failed: {ack.decode(errors='replace')}", flush=True)
            sys.exit(1)
        pids.append(pid)
    for pid in pids:
        print(pid)
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.stdin.read()
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
