"""views/loadavg.py + sampler.py: kernel fixed-point EWMA, formatting, registration, sampling and pruning."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pylxcfs.context import ViewEnv
from pylxcfs.hostfs import HostRoot
from pylxcfs.sampler import LoadavgSampler, sample_cgroup, sample_once
from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.views.loadavg import EXP, STATE_KEY, LoadavgState, calc_load, registered, render_loadavg

from .conftest import HOSTS


def test_one_busy_task_matches_lxcfs_observed_sequence() -> None:
    # spec §6.8 observed with one busy loop, 5 s apart: 0.08 0.02 0.01, then 0.15, 0.22, 0.28, 0.34
    av = [0, 0, 0]
    firsts = []
    for i in range(5):
        av = [calc_load(a, 1, e) for a, e in zip(av, EXP, strict=True)]
        line = render_loadavg(av, 1, 4, 17237)
        firsts.append(line.split()[0])
        if i == 0:
            assert line == "0.08 0.02 0.01 1/4 17237\n"
    assert firsts == ["0.08", "0.15", "0.22", "0.28", "0.34"]


def test_idle_decays_to_zero() -> None:
    av = [calc_load(0, 3, e) for e in EXP]
    for _ in range(2000):
        av = [calc_load(a, 0, e) for a, e in zip(av, EXP, strict=True)]
    assert render_loadavg(av, 0, 1, 1).startswith("0.00 0.00 0.00")


def _copy(tmp_path: Path, host: str) -> Path:
    dst = tmp_path / host
    shutil.copytree(HOSTS / host, dst, symlinks=True)
    return dst


def test_sample_reads_threads_and_states() -> None:
    root = HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22")
    cg = f"{root.cgroup}/system.slice/docker-abc.scope"
    # 4242 is S, 4243 is R in the fixture's /proc/<pid>/stat
    assert sample_cgroup(root, cg, v2=True) == (1, 2, 4243)


def test_v1_tasks_and_subcgroups(tmp_path: Path) -> None:
    tree = _copy(tmp_path, "x86_64-legacy-centos7")
    sub = tree / "sys/fs/cgroup/cpu,cpuacct/docker/ct1/inner"
    sub.mkdir()
    (sub / "tasks").write_text("4243\n")
    (tree / "sys/fs/cgroup/cpu,cpuacct/docker/ct1/tasks").write_text("4242\n")
    root = HostRoot.from_dir(tree)
    assert sample_cgroup(root, f"{root.cgroup}/cpu,cpuacct/docker/ct1", v2=False) == (0, 2, 4243)


def test_read_registers_then_sampler_updates_then_prunes(tmp_path: Path) -> None:
    tree = _copy(tmp_path, "x86_64-unified-ubuntu22")
    r = Renderer(HostRoot.from_dir(tree), ViewOptions(enable_loadavg=True))
    assert r.render("proc/loadavg", 4243) == b"0.00 0.00 0.00 0/1 4242\n"
    state = r.env.states[STATE_KEY]
    assert isinstance(state, LoadavgState) and state.table is not None and not state.nodes
    assert registered(state) == [f"{r.root.cgroup}/system.slice/docker-abc.scope"]
    sample_once(r.root, state)
    assert r.render("proc/loadavg", 4243) == b"0.08 0.02 0.01 1/2 4243\n"
    # the container goes away: its cgroup is removed -> the node is pruned
    shutil.rmtree(tree / "sys/fs/cgroup/system.slice/docker-abc.scope")
    sample_once(r.root, state)
    assert registered(state) == []


def test_sampler_thread_starts_and_stops() -> None:
    root = HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22")
    env = ViewEnv(root, ViewOptions(enable_loadavg=True))
    r = Renderer(root, env.opts)
    r.render("proc/loadavg", 4243)
    s = LoadavgSampler(root, r.env, interval_s=0.05)
    s.start()
    deadline = time.monotonic() + 5
    while r.render("proc/loadavg", 4243).startswith(b"0.00") and time.monotonic() < deadline:
        time.sleep(0.02)
    s.stop()
    assert not r.render("proc/loadavg", 4243).startswith(b"0.00 0.00 0.00")
    assert not s._thread.is_alive()


def test_renderer_start_close_runs_the_sampler_only_with_l() -> None:
    root = HostRoot.from_dir(HOSTS / "x86_64-unified-ubuntu22")
    r = Renderer(root, ViewOptions())
    r.start()
    assert r._sampler is None
    r.close()
    r2 = Renderer(root, ViewOptions(enable_loadavg=True))
    r2.start()
    try:
        assert r2._sampler is not None and r2._sampler._thread.is_alive()
    finally:
        r2.close()
    assert r2._sampler is None
