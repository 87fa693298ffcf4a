"""How every view reads host and cgroup files: one daemon-wide cache of open descriptors.

A kept descriptor of a kernel-generated file re-read with pread at offset 0 gives the kernel's current content at
a fraction of open+read+close (fdcache.py has the measurements and the lifetime facts); the cache itself keeps
only such files (procfs, sysfs, cgroupfs) and reads any other file afresh, so a host tree of plain files
(--host-root) goes through the same code. One cache serves all views, so a file two views read (the cgroup's
cpuacct files, /proc/stat) holds one descriptor, and one bound caps them all.
"""

from __future__ import annotations

from collections.abc import Callable

from pylxcfs.context import ViewEnv
from pylxcfs.fdcache import FdCache

__all__ = ["MAX_CACHED_FDS", "STATE_KEY", "Reader", "reader"]

Reader = Callable[[str], bytes]
STATE_KEY = "fdcache"  # ViewEnv.states entry shared by every view
# Enough for ~250 busy containers (a handful of files each) within the soft RLIMIT_NOFILE of 1024 that
# systemd gives services, which the daemon lifts to the hard limit anyway (cli.raise_nofile_limit).
MAX_CACHED_FDS = 1024


def reader(env: ViewEnv) -> Reader:
    """The read function views use: the daemon-wide descriptor cache."""
    cache = env.states.get(STATE_KEY)
    if not isinstance(cache, FdCache):
        cache = FdCache(max_fds=MAX_CACHED_FDS)
        env.states[STATE_KEY] = cache
    return cache.read
