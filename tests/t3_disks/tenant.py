"""A hostile tenant, run by the disks attack tests as `nobody` in a user + pid + mount namespace:

    setpriv --reuid nobody --regid nogroup --clear-groups unshare -Urmpf /usr/bin/python3 tenant.py MODE MNT BASE

This process is PID 1 (the container's init) of the new pid namespace. It forks a sibling first, then makes its
own root or /dev something a daemon must never walk (below), then tells the sibling to read MNT/proc/partitions
and MNT/proc/diskstats. The sibling prints one JSON line: what it read (or the error) and how long each read
took. The daemon resolves the sibling to this init, so the daemon has to decide about THIS process's root.

Modes (BASE is a directory owned by the tenant; MNT is the daemon's mount point, BASE/mnt; BASE/fuse, if there,
a world-usable node of /dev/fuse):
  chroot-proc  init chroots into MNT/proc (its root is a directory of the daemon's own FUSE mount)
  overlay-up   init's root is an overlay whose upperdir= string goes through the daemon's mount:
               upperdir=MNT/sys/../../x/upper (it resolves to BASE/x/upper, owned by the tenant)
  fuse-root    init's root is a fuse-overlayfs mount whose server is then SIGSTOPped (any request hangs)
  fuse-dev     init's root is a tmpfs, its /dev a fuse-overlayfs mount whose server is then SIGSTOPped
  fuse-node    init's /dev is a tmpfs whose node `sdz` has a file of a stopped fuse-overlayfs bound over it
  hang-self    control: init lists its own stopped fuse-overlayfs mount (hangs until killed)
  many-dev     init's /dev is a tmpfs with N (argv[4]) entries, then one block node `xvdq` for MAJ:MIN
               (argv[5]; in a user namespace the host node argv[6] bound there). tmpfs lists the newest
               entry first, so the node is within the first entries a bounded scan examines

Only the Python standard library (it runs under /usr/bin/python3 as nobody, not in the test venv).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

libc = ctypes.CDLL("libc.so.6", use_errno=True)
MS_BIND = 4096


def mount(src: str, dst: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    r = libc.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {src} {dst} {fstype} {data}: {os.strerror(e)}")


def wait_mounted(path: str, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open("/proc/self/mountinfo") as f:
            if any(line.split()[4] == path for line in f):
                return
        time.sleep(0.02)
    raise RuntimeError(f"{path} not mounted")


def fuse_overlay(base: str, at: str) -> subprocess.Popen[bytes]:
    """A fuse-overlayfs mount at `at` (foreground server, our child) over a lower dir with one file."""
    if os.path.exists(os.path.join(base, "fuse")) and not os.path.ismount("/dev/fuse"):
        # The test host's /dev/fuse is root-only; the test made a 0666 node of the same device in BASE (what
        # Debian's udev rule gives every host), bound over /dev/fuse in this mount namespace only.
        mount(os.path.join(base, "fuse"), "/dev/fuse", None, MS_BIND)
    lower = os.path.join(base, "flower")
    os.makedirs(os.path.join(lower, "dev"), exist_ok=True)
    with open(os.path.join(lower, "file"), "w") as f:
        f.write("x")
    os.makedirs(at, exist_ok=True)
    srv = subprocess.Popen(["fuse-overlayfs", "-f", "-o", f"lowerdir={lower}", at],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_mounted(at)
    return srv


def sibling(rfd: int, mnt: str) -> None:
    os.read(rfd, 1)
    out: dict[str, object] = {"pid": os.getpid()}
    for name in ("partitions", "diskstats"):
        t0 = time.monotonic()
        try:
            with open(os.path.join(mnt, "proc", name)) as f:
                out[name] = f.read()
        except OSError as e:
            out[name + "_error"] = str(e)
        out[name + "_s"] = time.monotonic() - t0
    print(json.dumps(out), flush=True)
    os._exit(0)


def main() -> None:
    mode, mnt, base = sys.argv[1], sys.argv[2], sys.argv[3]
    rfd, wfd = os.pipe()
    kid = os.fork()
    if kid == 0:
        os.close(wfd)
        sibling(rfd, mnt)
    os.close(rfd)
    stop: list[int] = []
    if mode == "chroot-proc":
        os.chroot(os.path.join(mnt, "proc"))
    elif mode == "overlay-up":
        for d in ("lower", "x/upper", "x/work", "merged"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        upper = f"{mnt}/sys/../../x/upper"
        mount("overlay", os.path.join(base, "merged"), "overlay", 0,
              f"lowerdir={base}/lower,upperdir={upper},workdir={base}/x/work,userxattr")
        os.chroot(os.path.join(base, "merged"))
    elif mode == "fuse-root":
        root = os.path.join(base, "froot")
        srv = fuse_overlay(base, root)
        mount("tmpfs", os.path.join(root, "dev"), "tmpfs", 0, "mode=755")
        os.chroot(root)
        stop.append(srv.pid)
    elif mode in ("fuse-dev", "fuse-node", "many-dev"):
        root = os.path.join(base, "troot")
        os.makedirs(root, exist_ok=True)
        mount("tmpfs", root, "tmpfs", 0, "mode=755")
        os.mkdir(os.path.join(root, "dev"))
        if mode == "fuse-dev":
            srv = fuse_overlay(base, os.path.join(root, "dev"))
            stop.append(srv.pid)
        else:
            mount("tmpfs", os.path.join(root, "dev"), "tmpfs", 0, "mode=755,nr_inodes=0")
            if mode == "fuse-node":
                srv = fuse_overlay(base, os.path.join(base, "fnode"))
                node = os.path.join(root, "dev", "sdz")
                open(node, "w").close()
                mount(os.path.join(base, "fnode", "file"), node, None, MS_BIND)
                stop.append(srv.pid)
            else:
                n, (major, minor) = int(sys.argv[4]), map(int, sys.argv[5].split(":"))
                d = os.path.join(root, "dev")
                for i in range(n):
                    open(os.path.join(d, f"e{i}"), "w").close()
                try:
                    os.mknod(os.path.join(d, "xvdq"), 0o600 | 0o060000, os.makedev(major, minor))
                except PermissionError:
                    # mknod of a device node is refused in a user namespace; a bind of the host node is what
                    # rootless engines do instead.
                    open(os.path.join(d, "xvdq"), "w").close()
                    mount(sys.argv[6], os.path.join(d, "xvdq"), None, MS_BIND)
        os.chroot(root)
    elif mode == "hang-self":
        # Control: the tenant's OWN access to its stopped server hangs (the attacks above are real ones).
        srv = fuse_overlay(base, os.path.join(base, "hang"))
        os.kill(srv.pid, signal.SIGSTOP)
        print("stopped", flush=True)
        os.listdir(os.path.join(base, "hang"))
        raise SystemExit("listdir on a stopped FUSE server returned")
    else:
        raise SystemExit(f"unknown mode {mode}")
    os.chdir("/")
    for pid in stop:
        os.kill(pid, signal.SIGSTOP)  # from now on every request to that FUSE server waits forever
    os.write(wfd, b"g")
    _, status = os.waitpid(kid, 0)
    print(json.dumps({"init": "done", "sibling_status": status}), flush=True)
    time.sleep(float(os.environ.get("TENANT_HOLD_S", "0")))  # debugging: keep the namespace for a look
    # Leaving: the pid namespace dies with its init, the stopped server with it (SIGKILL works on stopped tasks).


if __name__ == "__main__":
    main()
