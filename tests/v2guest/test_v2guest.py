"""Boot the pure cgroup-v2 QEMU guest once and require the inner session (tests/v2guest/inner) to pass in it.

The guest's kernel is Debian's generic one booted with cgroup_no_v1=all, so the daemon meets the layout that this
hybrid host cannot offer: every controller on cgroup2 (memory.max, memory.swap.max, cpu.max, cpu.stat,
cpuset.cpus.effective, io.stat). tools/v2guest/run.py does the booting; the first run on a machine downloads the
kernel package with apt into <repo>/.cache/v2guest. The inner session's whole output is printed here, so a
failure inside the guest reads like any other pytest failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "tools" / "v2guest" / "run.py"
GUEST_TIMEOUT = 840  # the runner kills QEMU after this; our own deadline below is a backstop

pytestmark = [pytest.mark.v2guest, pytest.mark.slow]


@pytest.mark.timeout(GUEST_TIMEOUT + 120)
def test_inner_session_passes_in_pure_v2_guest(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "the v2 guest runner needs root (apt-get, 9p export of /)"
    cmd = [
        sys.executable, str(RUNNER), "--timeout", str(GUEST_TIMEOUT), "--cpus", "2", "--mem", "1024",
        # vda: the container's I/O (io.stat, diskstats); vdb: swap (memory.swap.max, swaps).
        "--disk-mb", "64", "--disk-mb", "128", "--cwd", str(REPO),
        "--",
        # The venv's interpreter is reachable at the same path in the guest (host / over 9p).
        sys.executable, "-m", "pytest", "tests/v2guest/inner", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
        "-v", "-ra",
        "--timeout", "300", "--color", "no",
    ]
    out_path = tmp_path / "guest-output.txt"
    started = time.monotonic()
    # A file, not a pipe: QEMU writes the guest's output straight into it, and nothing can fill up and block.
    with out_path.open("wb") as out:
        runner = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc: int | None = runner.wait(timeout=GUEST_TIMEOUT + 60)
        except subprocess.TimeoutExpired:
            # The runner and QEMU share the new process group we created for them.
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
            rc = None
    elapsed = time.monotonic() - started
    output = out_path.read_text(errors="replace")
    print(output)
    print(f"v2guest host test: runner exit {rc} after {elapsed:.1f} s")
    assert rc is not None, f"the runner did not finish within {GUEST_TIMEOUT + 60} s"
    assert rc == 0, f"the inner session failed in the pure cgroup-v2 guest (exit {rc}); its output is above"
    summary = re.findall(r"^=+ (.*) in [\d.]+s", output, re.MULTILINE)
    assert summary, "no pytest summary line in the guest's output"
    assert re.search(r"\b\d+ passed\b", summary[-1]) and not re.search(r"failed|error|skipped", summary[-1])
