"""/proc/pressure/{cpu,memory,io} through the production path (Renderer over fixture trees, real resolver).

Independent expectations: a container's file is its group's <resource>.pressure as the kernel wrote it (the
fixture file, byte for byte: our output uses the kernel's own format), the host's /proc/pressure/<resource> where
the group has none, the host file for a host caller; hosts without /proc/pressure do not offer the files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pylxcfs.hostfs import HostRoot
from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.views.registry import VIEWS

from .conftest import HOSTS, check_golden

PRESSURE = ("cpu", "io", "memory")
# host -> the container group's directory (relative to the tree) holding the captured/synthetic pressure files
GROUPS = {
    "x86_64-hybrid-debian12": "sys/fs/cgroup/unified/lxc/ct",  # hybrid: the unified mount carries PSI
    "x86_64-unified-ubuntu22": "sys/fs/cgroup/system.slice/docker-abc.scope",
}


def _renderer(host: str) -> Renderer:
    return Renderer(HostRoot.from_dir(HOSTS / host), ViewOptions())


@pytest.mark.parametrize("host", sorted(GROUPS))
@pytest.mark.parametrize("resource", PRESSURE)
def test_golden_and_equal_to_the_kernels_file(host: str, resource: str) -> None:
    r = _renderer(host)
    out = r.render(f"proc/pressure/{resource}", 4243).decode()
    assert not r.fallbacks, r.fallbacks
    group_file = HOSTS / host / GROUPS[host] / f"{resource}.pressure"
    host_file = HOSTS / host / "proc/pressure" / resource
    # The group's own file when it has one, else (documented rule) the host's.
    expected = group_file.read_text() if group_file.exists() else host_file.read_text()
    assert out == expected
    check_golden(host, f"pressure/{resource}", out)


def test_group_values_differ_from_the_hosts() -> None:
    # Guard against a test that could not fail: the fixtures' group and host files differ.
    for host, grp in GROUPS.items():
        for res in ("cpu", "memory"):
            assert (HOSTS / host / grp / f"{res}.pressure").read_text() != \
                (HOSTS / host / "proc/pressure" / res).read_text(), (host, res)


def test_group_without_io_pressure_gets_the_host_file() -> None:
    host = "x86_64-unified-ubuntu22"
    assert not (HOSTS / host / GROUPS[host] / "io.pressure").exists()
    out = _renderer(host).render("proc/pressure/io", 4243).decode()
    assert out == (HOSTS / host / "proc/pressure/io").read_text()


@pytest.mark.parametrize("host", sorted(GROUPS))
def test_host_caller_gets_the_host_file(host: str) -> None:
    r = _renderer(host)
    for res in PRESSURE:
        assert r.render(f"proc/pressure/{res}", 100).decode() == (HOSTS / host / "proc/pressure" / res).read_text()


def test_hosts_without_psi_do_not_offer_the_files() -> None:
    rows = {v.path for v in VIEWS if v.module.startswith("pressure")}
    assert rows == {f"proc/pressure/{r}" for r in PRESSURE}
    assert all(v.host_optional for v in VIEWS if v.path in rows)
    # CentOS 7's 3.10 kernel has no PSI (4.20+): no /proc/pressure in its tree.
    legacy = _renderer("x86_64-legacy-centos7")
    assert not rows & set(legacy.paths())
    assert "proc/meminfo" in legacy.paths()
    assert rows <= set(_renderer("x86_64-hybrid-debian12").paths())


def test_container_on_a_pure_v1_host_gets_the_host_file(tmp_path: Path) -> None:
    # A v1-only host whose kernel has PSI (v1 has no per-group pressure): the host file, no warning.
    root = tmp_path / "h"
    shutil.copytree(HOSTS / "x86_64-legacy-centos7", root, symlinks=True)
    (root / "proc/pressure").mkdir()
    (root / "proc/pressure/memory").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=9\n"
                                               "full avg10=0.00 avg60=0.00 avg300=0.00 total=3\n")
    r = Renderer(HostRoot.from_dir(root), ViewOptions())
    assert "proc/pressure/memory" in r.paths() and "proc/pressure/cpu" not in r.paths()
    assert r.render("proc/pressure/memory", 4243) == (root / "proc/pressure/memory").read_bytes()
    assert not r.fallbacks


def test_resolved_context_names_the_unified_group() -> None:
    hyb = _renderer("x86_64-hybrid-debian12").context(4243)
    assert hyb.unified is not None and hyb.unified.v2
    assert hyb.unified.path == str(HOSTS / "x86_64-hybrid-debian12" / GROUPS["x86_64-hybrid-debian12"])
    assert hyb.memory is not None and not hyb.memory.v2  # v1 still wins for the controllers
    assert _renderer("x86_64-legacy-centos7").context(4243).unified is None
