"""The loadavg sampler's per-pass memo (sampler.PassMemo, issue 5) gives the same (running, total, last_pid)
per registered cgroup as the straightforward walk it replaced (below: every registered cgroup walked on its
own, every file and thread state read again), on real nested v1 cpu cgroups with sleeping and busy tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylxcfs.context import CgroupDir
from pylxcfs.hostfs import HostRoot, read_bytes
from pylxcfs.sampler import PassMemo, sample_cgroup, sample_once
from pylxcfs.views.loadavg import LoadavgState, LoadNode

pytestmark = pytest.mark.root
CPU = Path("/sys/fs/cgroup/cpu")


def reference_tids(cgdir: str, depth: int = 3) -> list[int] | None:
    try:
        data = read_bytes(f"{cgdir}/tasks")
    except FileNotFoundError:
        return None
    except OSError:
        return []
    out = [int(x) for x in data.split()]
    if depth > 0:
        for e in sorted(os.scandir(cgdir), key=lambda e: e.name):
            if e.is_dir(follow_symlinks=False):
                out += reference_tids(e.path, depth - 1) or []
    return out


def reference_sample(cgdir: str) -> tuple[int, int, int] | None:
    tids = reference_tids(cgdir)
    if not tids:
        return None
    running = 0
    for tid in tids:
        data = read_bytes(f"/proc/{tid}/stat")
        if data[data.rfind(b")") + 2 : data.rfind(b")") + 3] in (b"R", b"D"):
            running += 1
    return running, len(tids), max(tids)


@pytest.fixture
def tree() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.fail("needs root (this machine kind runs the tests as root)")
    base = CPU / f"pylxcfs-test-perfsampler-{os.getpid()}"
    dirs = {"P": base, "a": base / "a", "b": base / "b", "g": base / "b" / "g", "deep": base / "b" / "g" / "h" / "i"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for d in (base, base / "a", base / "b", base / "b" / "g", base / "b" / "g" / "h", dirs["deep"]):
            d.mkdir()

        def start(d: Path, argv: list[str]) -> None:
            procs.append(subprocess.Popen(argv, preexec_fn=lambda: (d / "cgroup.procs").write_text(str(os.getpid()))))

        start(dirs["a"], ["sleep", "600"])
        start(dirs["a"], [sys.executable, "-c", "while True: pass"])  # always R (running or runnable)
        start(dirs["b"], ["sleep", "600"])
        start(dirs["g"], ["sleep", "600"])
        start(dirs["deep"], ["sleep", "600"])  # 4 levels below P: outside P's depth-3 walk, inside g's
        time.sleep(0.3)
        yield {k: str(v) for k, v in dirs.items()}
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        time.sleep(0.2)
        for d in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            d.rmdir()
        base.rmdir()


def test_memoized_pass_equals_reference_walk(tree: dict[str, str]) -> None:
    memo = PassMemo()
    got = {k: sample_cgroup(HostRoot(), d, False, memo) for k, d in tree.items()}
    ref = {k: reference_sample(d) for k, d in tree.items()}
    # running counts come from the busy task (always R) and sleepers (always S): stable between the two reads
    assert got == ref
    assert got["P"] is not None and got["P"][0] == 1 and got["P"][1] == 4  # deep is beyond P's 3 levels
    assert got["g"] is not None and got["g"][1] == 2  # g and deep (2 levels below g)
    assert len(memo.dirs) == 6  # every directory read once, whatever the order of the registered cgroups


def test_sample_once_updates_every_node_like_separate_walks(tree: dict[str, str]) -> None:
    st = LoadavgState()
    for d in tree.values():
        st.nodes[d] = LoadNode(CgroupDir(d, False, str(CPU)))
    sample_once(HostRoot(), st)
    for k, d in tree.items():
        node = st.nodes[d]
        ref = reference_sample(d)
        assert ref is not None
        assert (node.running, node.total, node.last_pid) == ref, k
