"""Golden renders of EVERY registry row on every fixture host of tests/fixtures/hosts, through the production path:
Renderer(HostRoot.from_dir(tree)).render(path, caller) with the real resolver. The rows come from the registry, so a
new row is covered without editing this file: it must render for real on some fixture host (and then have a golden
there) or have a golden in another family (tests/golden/disks for the disk fixtures), else
test_every_registry_row_has_a_golden fails.

Golden names: the row's path without the leading "proc/" (tests/golden/<host>/meminfo.txt,
tests/golden/<host>/sys/devices/system/cpu/online.txt).
"""

from __future__ import annotations

import pytest

from pylxcfs.hostfs import HostRoot
from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.views.registry import VIEW_PATHS

from .conftest import GOLDEN, HOSTS, UPDATE, check_golden

FIXTURE_HOSTS = sorted(p.name for p in HOSTS.iterdir() if p.is_dir())
# Golden families: <family>/<host>/<name>.txt. The disk views have their own fixtures and checks (tests/t1_disks).
FAMILIES = (GOLDEN, GOLDEN / "disks")
CALLER = 4243  # the captured container's second process (tools/capture_fixture.py)


def golden_name(path: str) -> str:
    return path.removeprefix("proc/")


@pytest.mark.parametrize("host", FIXTURE_HOSTS)
@pytest.mark.parametrize("path", VIEW_PATHS)
def test_golden(host: str, path: str) -> None:
    r = Renderer(HostRoot.from_dir(HOSTS / host), ViewOptions(enable_loadavg=True))
    out = r.render(path, CALLER).decode()
    golden = GOLDEN / host / f"{golden_name(path)}.txt"
    if r.fallbacks and not UPDATE:
        # Only a fixture that lacks a file the view needs may fall back (older captures have no /proc/stat, no
        # sysfs, no diskstats; a missing /proc/<pid>/... file reads as ProcessGone); any other reason is a bug.
        # A golden is always a real render.
        assert {reason for _p, reason in r.fallbacks} <= {"FileNotFoundError", "ProcessGone"}, r.fallbacks
        assert not golden.exists(), f"{golden} exists but the view fell back: {r.fallbacks}"
        return
    if not r.fallbacks:
        check_golden(host, golden_name(path), out)


@pytest.mark.parametrize("path", VIEW_PATHS)
def test_every_registry_row_has_a_golden(path: str) -> None:
    found = [g for fam in FAMILIES if fam.is_dir() for h in fam.iterdir()
             if (g := h / f"{golden_name(path)}.txt").is_file()]
    assert found, f"registry row {path} has no golden file in {[str(f) for f in FAMILIES]}"
