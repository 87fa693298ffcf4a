"""A registry row that names a missing module or function stops `pylxcfs` at start, before anything is mounted, with
one clear line and no traceback (no silent host-file fallback while serving). The daemon runs as a real process; the
broken row is put into its registry by a tiny wrapper, since the shipped registry is whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root]

WRAPPER = """
import sys
from pylxcfs import service
from pylxcfs.views.registry import ViewSpec
service.VIEWS = (*service.VIEWS, ViewSpec("proc/slabinfo", sys.argv[1], sys.argv[2]))
from pylxcfs.cli import main
raise SystemExit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize(("module", "function", "why"), [
    ("no_such_view", "produce", "proc/slabinfo: cannot import pylxcfs.views.no_such_view"),
    ("meminfo", "no_such_function", "proc/slabinfo: pylxcfs.views.meminfo has no function no_such_function()"),
])
def test_bad_row_fails_at_start(tmp_path: Path, module: str, function: str, why: str) -> None:
    assert os.geteuid() == 0, "needs root (the daemon refuses to start otherwise, before the registry check)"
    mnt, pidfile = tmp_path / "mnt", tmp_path / "pid"
    mnt.mkdir()
    r = subprocess.run([sys.executable, "-c", WRAPPER, module, function, "--foreground", "--pidfile", str(pidfile),
                        str(mnt)], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert why in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not os.path.ismount(mnt) and not pidfile.exists()
