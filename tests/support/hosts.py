"""The one fixture family and the one golden layout every view's tests use (tier t1: plain files, no root).

Fixture hosts: tests/fixtures/hosts/<host>/ is a tree laid out like a host's root -- proc/, sys/ and the cgroup
files under sys/fs/cgroup/ -- read through HostRoot.from_dir(tree), i.e. through the same code as the live host.
Each host has a MANIFEST.toml: `id` (= the directory name), kernel, arch, distro, layout, how it was made, and,
when the tree holds a container, `container_init_pid`, `container_caller_pid` and `host_caller_pid`. A host without
a container is a sample of host files for the parsers (another arch's /proc/cpuinfo, a verbatim /proc/stat).
Synthetic hosts come from tools/make_synthetic_fixtures.py, captures from tools/capture_fixture.py; hand-made
trees say so in their MANIFEST.

Goldens: tests/golden/<host>/<row>.txt, where <row> is the registry row's path without the leading "proc/"
(golden/<host>/meminfo.txt, golden/<host>/pressure/cpu.txt, golden/<host>/sys/devices/system/cpu/online.txt).
t1_views/test_golden_core.py renders every registry row on every host with a container through the production
path (Renderer + Resolver) and compares; a row must have a golden on at least one host. An area's own tests may
compare a pure render with the same file through `check_golden(host, row, text)`.

Copying a host (to change a file in a test): `copy_host(host, dst)`, or shutil.copytree(..., symlinks=True); the
trees hold dangling symlinks as procfs shows them (proc/<pid>/ns/pid -> "pid:[<inode>]"), which a plain copytree
refuses.

Writing goldens: PYLXCFS_UPDATE_GOLDEN=1 makes check_golden write instead of compare (then review the diff as code:
a golden needs an independent check -- expected numbers derived by hand in the area's tests -- never only our output).
"""

from __future__ import annotations

import os
import shutil
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from pylxcfs.hostfs import HostRoot

TESTS = Path(__file__).resolve().parents[1]
HOSTS = TESTS / "fixtures" / "hosts"
GOLDEN = TESTS / "golden"
UPDATE = os.environ.get("PYLXCFS_UPDATE_GOLDEN") == "1"

__all__ = ["GOLDEN", "HOSTS", "UPDATE", "all_hosts", "check_golden", "container_hosts", "copy_host", "golden_path",
           "host_root", "manifest", "row_name"]


def all_hosts() -> list[str]:
    """Every fixture host (directory names, sorted)."""
    return sorted(p.name for p in HOSTS.iterdir() if p.is_dir())


@cache
def manifest(host: str) -> dict[str, Any]:
    """The host's MANIFEST.toml."""
    with open(HOSTS / host / "MANIFEST.toml", "rb") as f:
        return tomllib.load(f)


def container_hosts() -> list[str]:
    """Hosts whose tree holds a container (MANIFEST names its caller pid)."""
    return [h for h in all_hosts() if "container_caller_pid" in manifest(h)]


def copy_host(host: str, dst: Path) -> HostRoot:
    """A private copy of the host's tree at `dst` (symlinks kept as they are), and a HostRoot over it."""
    shutil.copytree(HOSTS / host, dst, symlinks=True)
    return HostRoot.from_dir(dst)


def host_root(host: str) -> HostRoot:
    """HostRoot over the host's tree."""
    return HostRoot.from_dir(HOSTS / host)


def row_name(path: str) -> str:
    """Golden name of a registry row: its path without the leading "proc/"."""
    return path.removeprefix("proc/")


def golden_path(host: str, row: str) -> Path:
    """tests/golden/<host>/<row>.txt (`row`: a registry path, with or without "proc/")."""
    return GOLDEN / host / f"{row_name(row)}.txt"


def check_golden(host: str, row: str, actual: str) -> None:
    """Compare `actual` with golden_path(host, row); under PYLXCFS_UPDATE_GOLDEN=1 write it instead."""
    path = golden_path(host, row)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"missing golden {path}; generate with PYLXCFS_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(), f"differs from {path}"
