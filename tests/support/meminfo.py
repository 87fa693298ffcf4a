"""/proc/meminfo figures for tests: one key of a meminfo text, and the MemTotal of this kernel's own file.

Plain stdlib, no pylxcfs import: tests/v2guest/inner uses it inside the QEMU guest too (the guest sees this tree
over 9p, and its pytest has tests/ on sys.path as the host's does)."""

from __future__ import annotations

from pathlib import Path


def meminfo_kib(text: str, key: str = "MemTotal") -> int:
    """The kB value of one /proc/meminfo key."""
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == key:
            return int(rest.split()[0])
    raise AssertionError(f"{key} missing from meminfo:\n{text[:300]}")


def host_memtotal_kib() -> int:
    """MemTotal of the kernel's own /proc/meminfo, as the test process reads it (the host's, or the guest's
    in the v2 guest): what a container sees once lxcfs is unmounted."""
    return meminfo_kib(Path("/proc/meminfo").read_text())
