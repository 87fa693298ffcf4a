"""Perform an AttachPlan / DetachPlan through pylxcfs.syscalls. Runs ONLY inside a forked single-threaded worker
(pylxcfs.forkjob.run_one): it calls setns(CLONE_NEWNS), which the kernel refuses in a multithreaded process, and it
may block on a FUSE server, which only a killable child with a deadline may do.

How a file (or a directory view) gets into a container that cannot see the lxcfs dir (runc's mountViaFds pattern):
1. in the toolkit's namespace, `open_tree(src, OPEN_TREE_CLONE)` gives a detached copy of the daemon's mount. The
   kernel puts that copy in the PEER GROUP of the daemon's mount when that is shared (systemd hosts, and always after
   `prestart`), so before the copy is attached anywhere its propagation is set to private with
   `mount_setattr(fd, "", AT_EMPTY_PATH|AT_RECURSIVE)`. Without mount_setattr (kernel < 5.12) the worker first moves
   into a private staging namespace of its own (unshare + rprivate), where every clone is born private;
2. `setns()` into the container's mount namespace;
3. detach stale lxcfs overlays at the targets (umount2 MNT_DETACH: needs no answer from the daemon);
4. resolve each target with `openat2(root, rel, RESOLVE_IN_ROOT)` so no symlink planted in the rootfs can lead outside
   it; refuse anything but a file (or, for a directory view, a directory) on procfs/sysfs, and refuse a target whose
   mount is shared (the kernel would copy our overlay to every peer of it and make the overlay shared);
5. `move_mount(src_fd -> target_fd)`, then check in the container's mountinfo that the new mount is not `shared:`
   (detached again when it is).
On the classic path (no open_tree, kernel < 5.2) the bind is made inside the container's namespace from the lxcfs
dir it sees; a bind joins the peer group of its source, so it is refused when that source mount is shared there.
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
from pylxcfs.ct.plan import AttachPlan, BindMount, DetachPlan, lxcfs_mounts_under
from pylxcfs.errors import ParseError
from pylxcfs.hostfs import read_text
from pylxcfs.parse.mountinfo import Mount, parse_mountinfo, top_mount_at
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

    def detach_at(self, rel: str) -> Mount | None:
        """umount2(MNT_DETACH) of the topmost mount at root/rel, reached through a verified fd. Returns what was
        detached, when mountinfo names it (a mount the container stacked on an lxcfs overlay is detached with it,
        as MNT_DETACH of the overlay itself would)."""
        fd = self.resolve(rel)
        try:
            top = self.mount_of(fd)
            sc.umount2(f"self/fd/{fd}", sc.MNT_DETACH)
            return top
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
                    gone = self.detach_at(rel)
                    what = (f"mount {m.mount_id} ({m.fstype})" if gone is None or gone.mount_id == m.mount_id else
                            f"mount {gone.mount_id} ({gone.fstype}) stacked on lxcfs mount {m.mount_id}")
                    out.append(Outcome("/" + rel, "removed", what))
                    progressed = True
                except OSError as exc:
                    out.append(Outcome("/" + rel, "failed", f"umount: {exc}"))
            if not progressed:
                return out
        out.append(Outcome("/", "failed", f"more than {_MAX_LAYERS} stacked lxcfs layers"))
        return out

    def mount_id_of(self, fd: int) -> int | None:
        """The id of the mount `fd` lies on (`mnt_id:` of /proc/self/fdinfo, readable for O_PATH fds and for the
        detached mounts open_tree returns), None when the kernel does not say."""
        try:
            info = os.open(f"self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.proc_fd)
        except OSError:
            return None
        try:
            text = os.read(info, 4096).decode("ascii", "replace")
        finally:
            os.close(info)
        for line in text.splitlines():
            if line.startswith("mnt_id:"):
                try:
                    return int(line.split()[1])
                except (IndexError, ValueError):
                    return None
        return None

    def mount_of(self, fd: int) -> Mount | None:
        """The mountinfo record of the mount `fd` lies on, in the current namespace."""
        mid = self.mount_id_of(fd)
        if mid is None:
            return None
        return next((m for m in self.mountinfo() if m.mount_id == mid), None)

    def check_target(self, rel: str, want_dir: bool = False) -> tuple[int | None, Outcome | None]:
        """fd of a target that may be covered (a regular file, or a directory for a directory view, on procfs or
        sysfs, on a mount that is not shared), or an Outcome saying why not."""
        try:
            fd = self.resolve(rel)
        except FileNotFoundError:
            return None, Outcome("/" + rel, "skipped", "target missing in the container")
        except OSError as exc:
            return None, Outcome("/" + rel, "failed", f"cannot resolve target inside the rootfs: {exc}")
        st = os.fstat(fd)
        ok_kind = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
        if not ok_kind:
            os.close(fd)
            kind = ("a symlink" if stat.S_ISLNK(st.st_mode) else
                    "not a directory" if want_dir else "not a regular file")
            return None, Outcome("/" + rel, "failed", f"refused: target is {kind}")
        fstype = sc.fstatfs_type(fd)
        if fstype not in _TARGET_FS:
            os.close(fd)
            return None, Outcome("/" + rel, "failed", f"refused: target is not on procfs/sysfs (f_type {fstype:#x})")
        parent = self.mount_of(fd)
        if parent is None:
            os.close(fd)
            return None, Outcome("/" + rel, "failed", "refused: cannot tell which mount holds the target")
        if parent.is_shared:
            os.close(fd)
            return None, Outcome("/" + rel, "failed",
                                 f"refused: the container's mount at {parent.mount_point} is shared "
                                 f"({' '.join(parent.optional)}); an overlay there would propagate to its peers")
        return fd, None


def _privatize(fd: int) -> None:
    """Make a detached clone and everything under it private before it is attached anywhere (kernel >= 5.12)."""
    sc.mount_setattr_propagation(fd, "", sc.MS_PRIVATE, sc.AT_EMPTY_PATH | sc.AT_RECURSIVE)


def _enter_staging_namespace() -> None:
    """Kernels without mount_setattr: a mount namespace of this worker alone, every mount in it private, so the
    clones open_tree takes from it are private from the start (the host's mounts are not touched: propagation
    changes in a copy affect only the copy)."""
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)


class _NoOpenTree(Exception):
    """open_tree(2) is missing (kernel < 5.2): the classic path applies."""


def _open_clones(plan: AttachPlan, privatize: bool) -> tuple[dict[str, int], list[Outcome]]:
    """open_tree every source; with `privatize`, each clone is made private before the next step. Raises
    _NoOpenTree, or OSError(ENOSYS) from mount_setattr (then no fd is left open)."""
    fds: dict[str, int] = {}
    out: list[Outcome] = []
    try:
        for m in plan.mounts:
            try:
                fd = sc.open_tree(sc.AT_FDCWD, m.source, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
            except FileNotFoundError:
                out.append(Outcome("/" + m.target, "skipped", f"{m.source} is not served by the daemon"))
                continue
            except OSError as exc:
                if exc.errno == errno.ENOSYS:
                    raise _NoOpenTree() from None
                out.append(Outcome("/" + m.target, "failed", f"open_tree {m.source}: {exc}"))
                continue
            fds[m.view] = fd
            if privatize:
                _privatize(fd)
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds, out


def grab_sources(plan: AttachPlan) -> tuple[dict[str, int], list[Outcome], str]:
    """Private detached clones of every source, taken in the CURRENT namespace. Returns (view -> fd, outcomes,
    method): method "open_tree" (clones made private with mount_setattr), "open_tree+staging" (no mount_setattr:
    clones taken in a private staging namespace; PYLXCFS_FORCE_STAGING_NS=1 forces it) or "classic" (no open_tree,
    or PYLXCFS_FORCE_CLASSIC_BIND=1)."""
    if os.environ.get("PYLXCFS_FORCE_CLASSIC_BIND") == "1":
        return {}, [], "classic"
    try:
        if os.environ.get("PYLXCFS_FORCE_STAGING_NS") != "1":
            try:
                fds, out = _open_clones(plan, privatize=True)
                return fds, out, "open_tree"
            except OSError as exc:
                if exc.errno != errno.ENOSYS:  # mount_setattr exists but refused: say so, never go on shared
                    raise
        _enter_staging_namespace()
        fds, out = _open_clones(plan, privatize=False)
        return fds, out, "open_tree+staging"
    except _NoOpenTree:
        return {}, [], "classic"


def _attach_one(session: Session, m: BindMount, method: str, fds: dict[str, int], is_dir: bool,
                classic_dir: str) -> Outcome:
    """Attach one view at its target, every propagation check made before the mount becomes visible."""
    tfd, why = session.check_target(m.target, want_dir=is_dir)
    if tfd is None:
        assert why is not None
        return why
    try:
        if method == "classic":
            src = posixpath.join(classic_dir, m.view)
            try:
                sfd = os.open(src, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                return Outcome("/" + m.target, "skipped", f"{src} not visible in the container")
            try:
                smount = session.mount_of(sfd)
            finally:
                os.close(sfd)
            if smount is None or smount.is_shared:
                shown = " ".join(smount.optional) if smount else "mount unknown"
                return Outcome("/" + m.target, "failed",
                               f"refused: classic bind from {src}, whose mount is shared in the container "
                               f"({shown}): the bind would join its peer group")
            sc.mount(src, f"self/fd/{tfd}", None, sc.MS_BIND)
            nfd = session.resolve(m.target)
        else:
            sc.move_mount(fds[m.view], "", tfd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH)
            nfd = os.dup(fds[m.view])
        try:
            new = session.mount_of(nfd)
            if new is None or new.is_shared or not new.is_fuse:
                sc.umount2(f"self/fd/{nfd}", sc.MNT_DETACH)
                shown = "not found in mountinfo" if new is None else f"{new.fstype} {' '.join(new.optional)}"
                return Outcome("/" + m.target, "failed", f"detached again: the new mount is {shown}")
        finally:
            os.close(nfd)
        detail = {"classic": "classic bind", "open_tree": "open_tree",
                  "open_tree+staging": "open_tree in a private staging namespace"}[method]
        return Outcome("/" + m.target, "mounted", detail + (" (directory)" if is_dir else ""))
    except OSError as exc:
        return Outcome("/" + m.target, "failed", str(exc))
    finally:
        os.close(tfd)


def attach(plan: AttachPlan) -> dict[str, Any]:
    """Worker body for remount and the hook. Returns {"outcomes": [...], "method": "open_tree"|...|"classic"}."""
    fds, outcomes, method = grab_sources(plan)
    classic = method == "classic"
    is_dir = {m.view: m.directory for m in plan.mounts}  # the plan decides (registry directory views)
    session = Session(plan.pid, plan.start_time, plan.root)
    session.enter()
    wanted = {m.target for m in plan.mounts if classic or m.view in fds}
    dir_targets = {m.target for m in plan.mounts if is_dir.get(m.view) and m.target in wanted}
    kept = set()
    if plan.live_dev is not None:
        mounts = session.mountinfo()
        for t in wanted:
            here = [m for m, rel in lxcfs_mounts_under(mounts, plan.root, (t,)) if rel == t]
            below = [m for m, rel in lxcfs_mounts_under(mounts, plan.root, (t + "/",))] if t in dir_targets else []
            if (len(here) == 1 and not below and here[0].dev == plan.live_dev
                    and top_mount_at(mounts, here[0].mount_point) == here[0]):
                kept.add(t)
                outcomes.append(Outcome("/" + t, "kept", f"already served by the live daemon ({plan.live_dev})"))
    wanted -= kept
    # A directory view replaces every lxcfs overlay inside it as well (e.g. a file overlay of cpu/online).
    prefixes = tuple({posixpath.dirname(t) + "/" for t in wanted} | {t + "/" for t in wanted & dir_targets})
    stale = {rel for _m, rel in lxcfs_mounts_under(session.mountinfo(), plan.root, prefixes)
             if rel in wanted or any(rel.startswith(d + "/") for d in wanted & dir_targets)}
    outcomes += session.remove_lxcfs(prefixes, only=stale | wanted)
    for m in plan.mounts:
        if m.target not in wanted:
            continue
        outcomes.append(_attach_one(session, m, method, fds, bool(is_dir.get(m.view)), plan.classic_dir))
    for fd in fds.values():  # clones we did not attach (kept targets) vanish with their fd
        os.close(fd)
    return {"outcomes": [o.to_json() for o in outcomes], "method": method}


def detach(plan: DetachPlan) -> dict[str, Any]:
    """Worker body for umount: remove every lxcfs mount under the container's /proc and /sys."""
    session = Session(plan.pid, plan.start_time, plan.root)
    session.enter()
    return {"outcomes": [o.to_json() for o in session.remove_lxcfs(plan.prefixes)]}
