"""Golden renders of EVERY registry row on every fixture host with a container (tests/support/hosts.py), through the
production path: Renderer(HostRoot.from_dir(tree)).render(path, caller) with the real resolver, the caller being the
MANIFEST's container_caller_pid. The rows come from the registry, so a new row is covered without editing this file:
it must render for real on some fixture host (and then have a golden there), else
test_every_registry_row_has_a_golden fails.

Golden names: the row's path without the leading "proc/" (tests/golden/<host>/meminfo.txt,
tests/golden/<host>/sys/devices/system/cpu/online.txt).
"""

from __future__ import annotations

import pytest

from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.views.registry import VIEW_PATHS
from support.hosts import (
    GOLDEN,
    HOSTS,
    UPDATE,
    all_hosts,
    check_golden,
    container_hosts,
    golden_path,
    host_root,
    manifest,
)


@pytest.mark.parametrize("host", container_hosts())
@pytest.mark.parametrize("path", VIEW_PATHS)
def test_golden(host: str, path: str) -> None:
    r = Renderer(host_root(host), ViewOptions(enable_loadavg=True))
    out = r.render(path, manifest(host)["container_caller_pid"]).decode()
    golden = golden_path(host, path)
    if r.fallbacks and not UPDATE:
        # Only a fixture that lacks a file the view needs may fall back (older captures have no /proc/stat, no
        # sysfs, no diskstats; a missing /proc/<pid>/... file reads as ProcessGone); any other reason is a bug.
        # A tree without the row's host file (a cpuinfo-only sample host) may also lack the cgroup controller.
        # A golden is always a real render.
        allowed = {"FileNotFoundError", "ProcessGone"}
        if not (HOSTS / host / path).exists():
            allowed.add("CgroupUnavailable")
        assert {reason for _p, reason in r.fallbacks} <= allowed, r.fallbacks
        assert not golden.exists(), f"{golden} exists but the view fell back: {r.fallbacks}"
        return
    if not r.fallbacks:
        check_golden(host, path, out)


@pytest.mark.parametrize("path", VIEW_PATHS)
def test_every_registry_row_has_a_golden(path: str) -> None:
    found = [h for h in container_hosts() if golden_path(h, path).is_file()]
    assert found, f"registry row {path} has no golden in {GOLDEN}/<host>/"


def test_one_fixture_family_and_golden_layout() -> None:
    # Every host has a MANIFEST naming it; every golden directory belongs to a host with a container; the
    # fixtures and goldens hold nothing but host trees (no per-area families beside tests/fixtures/hosts).
    for h in all_hosts():
        assert manifest(h)["id"] == h
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
    assert {p.name for p in GOLDEN.iterdir()} <= set(container_hosts())
    assert [p.name for p in GOLDEN.parent.joinpath("fixtures").iterdir()] == ["hosts"]
