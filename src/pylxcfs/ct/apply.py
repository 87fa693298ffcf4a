"""Perform an AttachPlan / DetachPlan through pylxcfs.syscalls. Runs ONLY inside a forked single-threaded worker
(nsexec.py): it calls setns(CLONE_NEWNS), which the kernel refuses in a multithreaded process, and it may block on a
FUSE server, which only a killable child with a deadline may do.

How a file gets into a container that cannot see the lxcfs dir (toolkit.md §6.6, runc's mountViaFds pattern):
1. in the toolkit's namespace, `open_tree(src, OPEN_TREE_CLONE)` gives a detached copy of the daemon's file mount;
2. `setns()` into the container's mount namespace;
3. detach stale lxcfs overlays at the targets (umount2 MNT_DETACH: needs no answer from the daemon);
4. resolve each target with `openat2(root, rel, RESOLVE_IN_ROOT)` so no symlink planted in the rootfs can lead outside
   it, refuse anything but a regular file on procfs/sysfs, then `move_mount(src_fd -> target_fd)`;
5. make the new mount a slave (mount_setattr propagation=MS_SLAVE), never shared, so nothing propagates back.
Path-only syscalls (umount2, mount) reach verified fds through the HOST procfs: the worker keeps an O_PATH fd on the
host /proc opened before setns, fchdir()s to it and names "self/fd/N" (the container's /proc belongs to another pid
namespace, where our "self" does not exist).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from dataclasses import asdict, dataclass
from typing import Any

from pylxcfs import syscalls as sc
from pylxcfs.ct.mountinfo import parse_mountinfo, top_mount_at
from pylxcfs.ct.plan import AttachPlan, DetachPlan, lxcfs_mounts_under
from pylxcfs.errors import ParseError
from pylxcfs.hostfs import read_text
from pylxcfs.parse.pid import parse_stat_starttime

_TARGET_FS = {sc.PROC_SUPER_MAGIC: "proc", sc.SYSFS_MAGIC: "sysfs"}
_MAX_LAYERS = 64  # bound every "while something is stacked" loop


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one target: action is mounted | kept | skipped | removed | failed."""

    target: str
    action: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def proc_start_time(pid: int, proc_dir: str = "/proc") -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), None when the pid is gone."""
    try:
        return parse_stat_starttime(read_text(f"{proc_dir}/{pid}/stat"), f"{proc_dir}/{pid}/stat")
    except (OSError, ParseError):
        return None


class Session:
    """The worker's namespace context: host procfs fd, container root fd, target namespace entered."""

    def __init__(self, pid: int | None, start_time: int | None, root: str) -> None:
        self.proc_fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.pid = pid
        self.root = root
        self.start_time = start_time
        self.root_fd = -1

    def enter(self) -> None:
        """setns into the pid's mount namespace (after checking the pid is still the same process), open the root."""
        if self.pid is not None:
            ns_fd = os.open(f"{self.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.proc_fd)
            try:
                if self.start_time is not None and proc_start_time(self.pid) != self.start_time:
                    raise ProcessLookupError(errno.ESRCH, f"pid {self.pid} was reused (start time changed)")
                sc.setns(ns_fd, sc.CLONE_NEWNS)
            finally:
                os.close(ns_fd)
        # From here on every relative path is resolved from the host procfs (see module docstring).
        os.fchdir(self.proc_fd)
        self.root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def mountinfo(self) -> list[Any]:
        fd = os.open("self/mountinfo", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.proc_fd)
        try:
            chunks = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        return parse_mountinfo(b"".join(chunks).decode("utf-8", "surrogateescape"))

    def resolve(self, rel: str) -> int:
        """O_PATH fd of root/rel, symlinks confined to the root, the last component never followed."""
        return sc.openat2(self.root_fd, rel, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                          sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)

    def detach_at(self, rel: str) -> None:
        """umount2(MNT_DETACH) of the topmost mount at root/rel, reached through a verified fd."""
        fd = self.resolve(rel)
        try:
            sc.umount2(f"self/fd/{fd}", sc.MNT_DETACH)
        finally:
            os.close(fd)

    def remove_lxcfs(self, prefixes: tuple[str, ...], only: set[str] | None = None) -> list[Outcome]:
        """Detach lxcfs mounts under root/<prefixes> (optionally only at targets in `only`), topmost first, until
        none is left: this is both `umount` and remount's stale clean-up. Never needs the daemon to answer."""
        out: list[Outcome] = []
        for _ in range(_MAX_LAYERS):
            found = [(m, rel) for m, rel in lxcfs_mounts_under(self.mountinfo(), self.root, prefixes)
                     if only is None or rel in only]
            if not found:
                return out
            progressed = False
            seen: set[str] = set()
            for m, rel in found:
                if rel in seen:  # one detach per target per round: the next round sees what is left below
                    continue
                seen.add(rel)
                try:
                    self.detach_at(rel)
                    out.append(Outcome("/" + rel, "removed", f"mount {m.mount_id} ({m.fstype})"))
                    progressed = True
                except OSError as exc:
                    out.append(Outcome("/" + rel, "failed", f"umount: {exc}"))
            if not progressed:
                return out
        out.append(Outcome("/", "failed", f"more than {_MAX_LAYERS} stacked lxcfs layers"))
        return out

    def check_target(self, rel: str) -> tuple[int | None, Outcome | None]:
        """fd of a target that may be covered (regular file on procfs/sysfs), or an Outcome saying why not."""
        try:
            fd = self.resolve(rel)
        except FileNotFoundError:
            return None, Outcome("/" + rel, "skipped", "target missing in the container")
        except OSError as exc:
            return None, Outcome("/" + rel, "failed", f"cannot resolve target inside the rootfs: {exc}")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            return None, Outcome("/" + rel, "failed", f"refused: target is {kind}")
        fstype = sc.fstatfs_type(fd)
        if fstype not in _TARGET_FS:
            os.close(fd)
            return None, Outcome("/" + rel, "failed", f"refused: target is not on procfs/sysfs (f_type {fstype:#x})")
        return fd, None


def grab_sources(plan: AttachPlan) -> tuple[dict[str, int], list[Outcome], bool]:
    """open_tree(OPEN_TREE_CLONE) every source in the CURRENT namespace. Returns (view -> fd, outcomes, classic),
    classic=True when the kernel lacks open_tree (ENOSYS) or PYLXCFS_FORCE_CLASSIC_BIND=1."""
    fds: dict[str, int] = {}
    out: list[Outcome] = []
    if os.environ.get("PYLXCFS_FORCE_CLASSIC_BIND") == "1":
        return fds, out, True
    for m in plan.mounts:
        try:
            fds[m.view] = sc.open_tree(sc.AT_FDCWD, m.source, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
        except FileNotFoundError:
            out.append(Outcome("/" + m.target, "skipped", f"{m.source} is not served by the daemon"))
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                for fd in fds.values():
                    os.close(fd)
                return {}, [], True
            out.append(Outcome("/" + m.target, "failed", f"open_tree {m.source}: {exc}"))
    return fds, out, False


def attach(plan: AttachPlan) -> dict[str, Any]:
    """Worker body for remount and the hook. Returns {"outcomes": [...], "method": "open_tree"|"classic"}."""
    fds, outcomes, classic = grab_sources(plan)
    session = Session(plan.pid, plan.start_time, plan.root)
    session.enter()
    wanted = {m.target for m in plan.mounts if classic or m.view in fds}
    kept = set()
    if plan.live_dev is not None:
        mounts = session.mountinfo()
        for t in wanted:
            here = [m for m, rel in lxcfs_mounts_under(mounts, plan.root, (t,)) if rel == t]
            if len(here) == 1 and here[0].dev == plan.live_dev and top_mount_at(mounts, here[0].mount_point) == here[0]:
                kept.add(t)
                outcomes.append(Outcome("/" + t, "kept", f"already served by the live daemon ({plan.live_dev})"))
    wanted -= kept
    outcomes += session.remove_lxcfs(tuple({posixpath.dirname(t) + "/" for t in wanted}), only=wanted)
    for m in plan.mounts:
        if (not classic and m.view not in fds) or m.target in kept:
            continue
        tfd, why = session.check_target(m.target)
        if tfd is None:
            assert why is not None
            outcomes.append(why)
            continue
        try:
            if classic:
                src = posixpath.join(plan.classic_dir, m.view)
                if not os.path.exists(src):
                    outcomes.append(Outcome("/" + m.target, "skipped", f"{src} not visible in the container"))
                    continue
                sc.mount(src, f"self/fd/{tfd}", None, sc.MS_BIND)
                nfd = session.resolve(m.target)
                try:
                    sc.mount(None, f"self/fd/{nfd}", None, sc.MS_SLAVE)
                finally:
                    os.close(nfd)
            else:
                src_fd = fds[m.view]
                sc.move_mount(src_fd, "", tfd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
                # Attached under a shared parent the clone would join a peer group; slave (or private when it
                # has no master) is what the product doc promises: nothing we mount may propagate back.
                sc.mount_setattr_propagation(src_fd, "", sc.MS_SLAVE, sc.AT_EMPTY_PATH)
            outcomes.append(Outcome("/" + m.target, "mounted", "classic bind" if classic else "open_tree"))
        except OSError as exc:
            outcomes.append(Outcome("/" + m.target, "failed", str(exc)))
        finally:
            os.close(tfd)
    for fd in fds.values():  # clones we did not attach (kept targets) vanish with their fd
        os.close(fd)
    return {"outcomes": [o.to_json() for o in outcomes], "method": "classic" if classic else "open_tree"}


def detach(plan: DetachPlan) -> dict[str, Any]:
    """Worker body for umount: remove every lxcfs mount under the container's /proc and /sys."""
    session = Session(plan.pid, plan.start_time, plan.root)
    session.enter()
    return {"outcomes": [o.to_json() for o in session.remove_lxcfs(plan.prefixes)]}
