"""cgroups/pressure.py over fixture trees and the live unified hierarchy (read-only)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from pylxcfs.cgroups.pressure import pressure
from pylxcfs.context import CgroupDir
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.parse.pressure import PressureLine

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"


def _cg(host: str, rel: str, v2: bool = True) -> CgroupDir:
    base = HOSTS / host / "sys/fs/cgroup"
    return CgroupDir(str(base / rel), v2, str(base))


def test_hybrid_unified_group_pressure() -> None:
    cg = _cg("x86_64-hybrid-debian12", "unified/lxc/ct")
    cpu = pressure(cg, "cpu")
    assert cpu is not None
    # numbers straight from the captured file (see the fixture's MANIFEST.toml "pressure")
    assert cpu.line("some") == PressureLine("some", 5130, 1332, 297, 8933232)
    assert cpu.line("full") == PressureLine("full", 1433, 318, 69, 2127346)


def test_missing_file_is_none() -> None:
    cg = _cg("x86_64-unified-ubuntu22", "system.slice/docker-abc.scope")
    assert pressure(cg, "cpu") is not None
    assert pressure(cg, "io") is None  # the fixture's group has no io.pressure
    assert pressure(_cg("x86_64-unified-ubuntu22", "no/such/group"), "cpu") is None


def test_v1_directory_has_no_pressure() -> None:
    cg = _cg("x86_64-hybrid-debian12", "memory/lxc/ct", v2=False)
    assert pressure(cg, "memory") is None


def test_unknown_resource_is_refused() -> None:
    with pytest.raises(ValueError):
        pressure(_cg("x86_64-unified-ubuntu22", "system.slice/docker-abc.scope"), "disk")


def test_psi_disabled_at_run_time_is_none_other_errors_raise() -> None:
    cg = _cg("x86_64-unified-ubuntu22", "system.slice/docker-abc.scope")

    def refusing(code: int) -> Callable[[str], bytes]:
        def read(path: str) -> bytes:
            raise OSError(code, "refused", path)
        return read

    assert pressure(cg, "cpu", refusing(errno.EOPNOTSUPP)) is None  # psi_show with psi=0
    with pytest.raises(CgroupUnavailable):
        pressure(cg, "cpu", refusing(errno.EACCES))


def test_live_unified_root_reads_if_present() -> None:
    # This machine's cgroup2 mount (hybrid: /sys/fs/cgroup/unified) carries PSI without any controller.
    root = Path("/sys/fs/cgroup/unified")
    if not (root / "cpu.pressure").exists():
        pytest.skip("no cgroup2 pressure files on this machine")
    p = pressure(CgroupDir(str(root), True, str(root)), "cpu")
    assert p is not None and p.line("some") is not None
