"""ctypes wrappers for the kernel calls Python 3.11 lacks: mount, umount2, setns, unshare, open_tree,
move_mount, mount_setattr.

This is the only module that calls the kernel through ctypes (design.md §2). Every wrapper raises
OSError with the errno and the paths involved. Nothing here decides anything.
"""

from __future__ import annotations

import ctypes
import os

# dlopen(NULL): the interpreter's own symbols, libc's among them, whatever the C library's file is called. Not
# ctypes.util.find_library("c"): it runs ldconfig and imports tempfile and shutil (1.7 MB in every process).
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# mount(2) flags (include/uapi/linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# namespaces (include/uapi/linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000

# open_tree / move_mount (Linux >= 5.2). The numbers are shared by every architecture since 5.2
# (the new syscall table is unified), so no per-arch table is needed.
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOVE_MOUNT_T_EMPTY_PATH = 0x00000040


def _check(ret: int, what: str, *paths: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        detail = " ".join(repr(p) for p in paths if p)
        raise OSError(err, f"{what} {detail}: {os.strerror(err)}".replace("  ", " "))
    return ret


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2)."""
    ret = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, "mount", source or "", target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), "umount2", target)


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2). A multithreaded process cannot join a mount namespace: call it in a forked child."""
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def open_tree(dfd: int, path: str, flags: int) -> int:
    """open_tree(2) (Linux >= 5.2); returns a new fd. ENOSYS on older kernels."""
    ret = _libc.syscall(ctypes.c_long(SYS_OPEN_TREE), ctypes.c_int(dfd), _b(path), ctypes.c_uint(flags))
    return _check(ret, "open_tree", path)


def move_mount(from_dfd: int, from_path: str, to_dfd: int, to_path: str, flags: int) -> None:
    """move_mount(2) (Linux >= 5.2)."""
    ret = _libc.syscall(ctypes.c_long(SYS_MOVE_MOUNT), ctypes.c_int(from_dfd), _b(from_path),
                        ctypes.c_int(to_dfd), _b(to_path), ctypes.c_uint(flags))
    _check(ret, "move_mount", from_path, to_path)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr_propagation(dfd: int, path: str, propagation: int, flags: int = 0) -> None:
    """mount_setattr(2) (Linux >= 5.12) setting only the propagation type (MS_SLAVE, MS_PRIVATE...)."""
    attr = _MountAttr(0, 0, propagation, 0)
    ret = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(dfd), _b(path), ctypes.c_uint(flags),
                        ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(ret, "mount_setattr", path)


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def set_pdeathsig(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` to this process when its parent thread dies.
    Survives execve (except set-uid binaries); cleared in children of fork()."""
    _check(_libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl(PR_SET_PDEATHSIG)")


def malloc_trim() -> None:
    """glibc malloc_trim(0): give the free pages in the C heap back to the kernel (madvise DONTNEED), so the
    garbage of start-up stops counting in our resident and proportional set size."""
    _libc.malloc_trim(ctypes.c_size_t(0))


def set_child_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to us, not to init (the zygote's
    double-forked workers become our children)."""
    _check(_libc.prctl(ctypes.c_int(PR_SET_CHILD_SUBREAPER), ctypes.c_ulong(1), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl(PR_SET_CHILD_SUBREAPER)")


# --- additions for the toolkit (ct/apply.py): safe target resolution and filesystem-type checks ---------------------
SYS_OPENAT2 = 437  # Linux >= 5.6, same number on every architecture (unified table)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10  # resolve as if dirfd were "/": absolute symlinks and ".." never leave it
RESOLVE_CACHED = 0x20  # Linux >= 5.12: only from the dentry cache; EAGAIN where a lookup would ask a filesystem

# statfs(2) f_type values (include/uapi/linux/magic.h)
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270
FUSE_SUPER_MAGIC = 0x65735546


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2) (Linux >= 5.6); returns a new fd. Use RESOLVE_IN_ROOT to confine symlinks to dirfd."""
    how = _OpenHow(flags, mode, resolve)
    ret = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), _b(path), ctypes.byref(how),
                        ctypes.c_size_t(ctypes.sizeof(how)))
    return _check(ret, "openat2", path)


class _Statfs(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type is the first word (__fsword_t); the rest is padding for our purpose.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 120)]


def fstatfs_type(fd: int) -> int:
    """fstatfs(2) f_type of the filesystem holding fd (works on O_PATH fds). Never call it on a FUSE fd outside a
    child with a deadline: it asks the FUSE server."""
    buf = _Statfs()
    _check(_libc.fstatfs(ctypes.c_int(fd), ctypes.byref(buf)), "fstatfs")
    return int(buf.f_type) & 0xFFFFFFFF


# --- seccomp user notification (include/uapi/linux/seccomp.h), for the sysinfo agent (pylxcfs/sysinfo/) ----------
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}  # seccomp(2) is not in the unified table: per-arch numbers
SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1  # Linux >= 5.5: the kernel runs the intercepted call itself


class SeccompData(ctypes.Structure):
    """struct seccomp_data."""

    _fields_ = [("nr", ctypes.c_int32), ("arch", ctypes.c_uint32), ("instruction_pointer", ctypes.c_uint64),
                ("args", ctypes.c_uint64 * 6)]


class SeccompNotif(ctypes.Structure):
    """struct seccomp_notif: what SECCOMP_IOCTL_NOTIF_RECV fills in (pid as seen from the receiver's pid ns)."""

    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("data", SeccompData)]


class SeccompNotifResp(ctypes.Structure):
    """struct seccomp_notif_resp."""

    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


class _NotifSizes(ctypes.Structure):
    _fields_ = [("seccomp_notif", ctypes.c_uint16), ("seccomp_notif_resp", ctypes.c_uint16),
                ("seccomp_data", ctypes.c_uint16)]


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("!") << 8) | nr


NOTIF_SIZES = (ctypes.sizeof(SeccompNotif), ctypes.sizeof(SeccompNotifResp))  # what we pass to the ioctls
SECCOMP_IOCTL_NOTIF_RECV = _ioc(3, 0, ctypes.sizeof(SeccompNotif))  # _IOWR
SECCOMP_IOCTL_NOTIF_SEND = _ioc(3, 1, ctypes.sizeof(SeccompNotifResp))  # _IOWR
SECCOMP_IOCTL_NOTIF_ID_VALID = _ioc(1, 2, 8)  # _IOW (the kernel also accepts the original _IOR number)

_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int


def seccomp_notif_sizes(machine: str) -> tuple[int, int, int]:
    """seccomp(SECCOMP_GET_NOTIF_SIZES): the kernel's (notif, notif_resp, data) struct sizes; OSError where the
    kernel has no user notification (< 5.0) or the architecture is not in SYS_SECCOMP (ENOSYS)."""
    nr = SYS_SECCOMP.get(machine)
    if nr is None:
        raise OSError(38, f"seccomp(2) number unknown for {machine}")
    sizes = _NotifSizes()
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_uint(SECCOMP_GET_NOTIF_SIZES), ctypes.c_uint(0),
                        ctypes.byref(sizes))
    _check(ret, "seccomp(SECCOMP_GET_NOTIF_SIZES)")
    return sizes.seccomp_notif, sizes.seccomp_notif_resp, sizes.seccomp_data


def notif_recv(fd: int) -> SeccompNotif:
    """SECCOMP_IOCTL_NOTIF_RECV on a listener fd (blocks until a notification is pending: poll first). ENOENT when
    the caller was interrupted between poll and receive."""
    n = SeccompNotif()  # the kernel insists on a zeroed buffer
    _check(_libc.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, ctypes.addressof(n)), "SECCOMP_IOCTL_NOTIF_RECV")
    return n


def notif_send(fd: int, notif_id: int, val: int = 0, error: int = 0, flags: int = 0) -> None:
    """SECCOMP_IOCTL_NOTIF_SEND: the intercepted call returns `val` (or -`error`), or with FLAG_CONTINUE the kernel
    runs it. ENOENT when the caller is gone (killed) or the id was answered already."""
    resp = SeccompNotifResp(notif_id, val, error, flags)
    _check(_libc.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, ctypes.addressof(resp)), "SECCOMP_IOCTL_NOTIF_SEND")


def notif_id_valid(fd: int, notif_id: int) -> bool:
    """SECCOMP_IOCTL_NOTIF_ID_VALID: is the caller still blocked in that very notification? (After opening
    /proc/<pid>/mem this proves the descriptor reaches the caller and not a process that reused its pid.)"""
    v = ctypes.c_uint64(notif_id)
    if _libc.ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, ctypes.addressof(v)) == 0:
        return True
    err = ctypes.get_errno()
    if err == 2:  # ENOENT
        return False
    raise OSError(err, f"SECCOMP_IOCTL_NOTIF_ID_VALID: {os.strerror(err)}")


class Sysinfo(ctypes.Structure):
    """struct sysinfo of the LP64 Linux ABI (include/uapi/linux/sysinfo.h; 112 bytes on x86_64 and aarch64)."""

    _fields_ = [("uptime", ctypes.c_long), ("loads", ctypes.c_ulong * 3), ("totalram", ctypes.c_ulong),
                ("freeram", ctypes.c_ulong), ("sharedram", ctypes.c_ulong), ("bufferram", ctypes.c_ulong),
                ("totalswap", ctypes.c_ulong), ("freeswap", ctypes.c_ulong), ("procs", ctypes.c_ushort),
                ("pad", ctypes.c_ushort), ("totalhigh", ctypes.c_ulong), ("freehigh", ctypes.c_ulong),
                ("mem_unit", ctypes.c_uint), ("_f", ctypes.c_char * 4)]


def sysinfo() -> Sysinfo:
    """sysinfo(2) of the calling process (the host's figures for the agent)."""
    si = Sysinfo()
    _check(_libc.sysinfo(ctypes.byref(si)), "sysinfo")
    return si

# --- statx for the disks gatherer (devnames.py): which mount an fd is on, without asking its filesystem ----------
AT_STATX_DONT_SYNC = 0x4000  # never revalidate with a server (FUSE, NFS): cached attributes only
STATX_MNT_ID = 0x1000  # Linux >= 5.8: stx_mnt_id, the mount id mountinfo lists first


class _Statx(ctypes.Structure):
    # struct statx (include/uapi/linux/stat.h) up to stx_mnt_id, padded to its 256 bytes.
    _fields_ = [("stx_mask", ctypes.c_uint32), ("_a", ctypes.c_byte * 140), ("stx_mnt_id", ctypes.c_uint64),
                ("_b", ctypes.c_byte * 104)]


def statx_mnt_id(fd: int) -> int:
    """The mount id of the mount holding `fd` (statx AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID). The
    filesystem is never asked (a FUSE server is not sent a request, an NFS server not contacted)."""
    buf = _Statx()
    _check(_libc.statx(ctypes.c_int(fd), b"", ctypes.c_int(AT_EMPTY_PATH | AT_STATX_DONT_SYNC),
                       ctypes.c_uint(STATX_MNT_ID), ctypes.byref(buf)), "statx")
    if not buf.stx_mask & STATX_MNT_ID:
        raise OSError(95, "statx: no STATX_MNT_ID (Linux < 5.8)")
    return int(buf.stx_mnt_id)


# --- the FUSE supervisor's adoption of a dead supervisor's workers (fuse/adopt.py) ------------------------------------
SYS_PIDFD_GETFD = 438  # Linux >= 5.6, same number on every architecture (unified table)


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """pidfd_getfd(2): a duplicate (O_CLOEXEC) of descriptor `targetfd` of the process behind `pidfd`. Needs
    PTRACE_MODE_ATTACH_REALCREDS over it (root, or the same user without Yama restrictions)."""
    ret = _libc.syscall(ctypes.c_long(SYS_PIDFD_GETFD), ctypes.c_int(pidfd), ctypes.c_int(targetfd),
                        ctypes.c_uint(0))
    return _check(ret, f"pidfd_getfd({targetfd})")
