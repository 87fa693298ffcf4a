"""lxcfs-hook under runc 1.1.5 at prestart, createRuntime and createContainer (one test per stage), then the
toolkit's umount / remount / remount-twice on the same containers. Expectations come from the limits we set
(memory 1 GiB, cpuset "0") and from the host's own /proc, never from our daemon's output."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from support import containers as C
from support.meminfo import host_memtotal_kib, meminfo_kib
from t4_toolkit.conftest import (
    HOOK,
    Env,
    host_snapshot,
    read_in,
    served_views,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.e2e]


def _lxcfs_by_target(ct: C.Container) -> dict[str, list[C.MountEntry]]:
    out: dict[str, list[C.MountEntry]] = {}
    for m in ct.mountinfo():
        if m.is_lxcfs:
            out.setdefault(m.mountpoint, []).append(m)
    return out


_PSI = re.compile(r"^(some|full) avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=(\d+)$")


def _psi_totals(text: str) -> dict[str, int]:
    """Independent PSI parser (Documentation/accounting/psi.rst): kind -> total stall usec."""
    out = {}
    for line in text.splitlines():
        m = _PSI.match(line)
        assert m, f"not a PSI line: {line!r}"
        out[m.group(1)] = int(m.group(2))
    return out


def _assert_pressure_is_the_groups(ct: C.Container) -> None:
    """/proc/pressure/<res> in the container lies between its cgroup2 group's own <res>.pressure (read on the host
    through the init's "0::" line) just before and just after; the host's system-wide cpu total is larger."""
    line = next(ln for ln in Path(f"/proc/{ct.pid}/cgroup").read_text().splitlines() if ln.startswith("0::"))
    group = Path("/sys/fs/cgroup/unified" + line[3:].rstrip("/"))
    for res in ("cpu", "memory", "io"):
        before = _psi_totals((group / f"{res}.pressure").read_text())
        mine = _psi_totals(read_in(ct, f"/proc/pressure/{res}"))
        after = _psi_totals((group / f"{res}.pressure").read_text())
        assert set(mine) == set(before), (res, mine, before)
        for kind in mine:
            assert before[kind] <= mine[kind] <= after[kind], (res, kind, before, mine, after)
    host = _psi_totals(Path("/proc/pressure/cpu").read_text())
    assert host["some"] > _psi_totals((group / "cpu.pressure").read_text())["some"]


def _assert_virtual(tenv: Env, ct: C.Container) -> None:
    views = served_views(tenv.lxcfs)
    assert "proc/meminfo" in views and "proc/cpuinfo" in views, views
    # This host has PSI, so the daemon serves /proc/pressure and the hook binds it (docs/pressure-vmstat.md).
    assert os.path.exists("/proc/pressure/cpu"), "this host's kernel has PSI (a prerequisite of this test)"
    assert {"proc/pressure/cpu", "proc/pressure/memory", "proc/pressure/io"} <= set(views), views
    _assert_pressure_is_the_groups(ct)
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
    free = ct.exec("/usr/bin/free", "-m", check=True).stdout.splitlines()
    mem = next(ln for ln in free if ln.startswith("Mem:"))
    assert int(mem.split()[1]) == 1024, free
    cpuinfo = read_in(ct, "/proc/cpuinfo")
    assert sum(1 for ln in cpuinfo.splitlines() if ln.startswith("processor")) == 1  # cpuset "0"
    assert read_in(ct, "/sys/devices/system/cpu/online").strip() == "0"
    by_target = _lxcfs_by_target(ct)
    for v in views:
        assert len(by_target.get("/" + v, [])) == 1, (v, by_target.keys())
    for ms in by_target.values():
        for m in ms:
            assert not m.is_shared, f"{m.mountpoint} is shared: {m.optional}"
            assert m.fstype == "fuse.lxcfs"


@pytest.mark.parametrize("stage", ["prestart", "createRuntime", "createContainer"])
def test_hook_stage_then_umount_remount(tenv: Env, stage: str) -> None:
    before = host_snapshot(tenv.base)
    ct = tenv.run(f"hook-{stage.lower()}", hook_stage=stage, free=True)
    _assert_virtual(tenv, ct)
    assert host_snapshot(tenv.base) == before, "the hook changed the host's mount table"

    # Registered for --all, with the container's host pid (createContainer finds it through the host procfs).
    rec = json.loads((tenv.registry / f"{ct.id}.json").read_text())
    assert rec["id"] == ct.id and rec["pid"] == ct.pid and rec["stage"] == stage

    # umount: host values come back, no lxcfs mount is left anywhere in /proc or /sys.
    r = tenv.toolkit("umount", "--container-id", ct.id)
    assert r.returncode == 0, r.stderr
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == host_memtotal_kib()
    assert not _lxcfs_by_target(ct)

    # remount brings the view back; twice does not stack (exactly one mount per target), and the second run keeps
    # the live overlays as they are (same mount ids: the files were never uncovered).
    ids = []
    for _ in range(2):
        r = tenv.toolkit("remount", "--container-id", ct.id, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["summary"] == "remount: 1 ok, 0 failed, 1 total"
        ids.append(sorted(m.mount_id for m in ct.host_mountinfo() if m.is_lxcfs))
    assert ids[0] == ids[1]
    actions = {o["action"] for o in json.loads(r.stdout)["results"][0]["outcomes"]}
    assert "kept" in actions and "mounted" not in actions, actions
    _assert_virtual(tenv, ct)
    assert host_snapshot(tenv.base) == before
    ct.stop()


def test_remount_into_container_started_without_lxcfs(tenv: Env) -> None:
    """open_tree path: the container has no lxcfs mount and cannot see the lxcfs dir at all."""
    ct = tenv.run("plain", free=True)
    assert not _lxcfs_by_target(ct)
    assert ct.exec("ls", str(tenv.lxcfs)).returncode != 0, "the container should not see the host lxcfs dir"
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == host_memtotal_kib()

    # Not set up for lxcfs: --all leaves it alone; --include-unconfigured takes it.
    r = tenv.toolkit("remount", "--all")
    assert r.returncode == 0 and "plain" not in r.stderr
    assert not _lxcfs_by_target(ct)
    r = tenv.toolkit("remount", "--all", "--include-unconfigured", "--json")
    assert r.returncode == 0, r.stderr
    res = {x["id"]: x for x in json.loads(r.stdout)["results"]}
    assert res["plain"]["status"] == "ok"
    _assert_virtual(tenv, ct)
    # Now it shows lxcfs mounts, so plain --all selects it (umount --all too).
    r = tenv.toolkit("umount", "--all", "--json")
    assert r.returncode == 0, r.stderr
    assert "plain" in {x["id"] for x in json.loads(r.stdout)["results"]}
    assert not _lxcfs_by_target(ct)
    r = tenv.toolkit("remount", "--pid", str(ct.pid))
    assert r.returncode == 0, r.stderr
    _assert_virtual(tenv, ct)
    ct.stop()


def test_runc_snippet_from_install_hook(tenv: Env) -> None:
    """The JSON `install-hook --format runc` prints, merged into config.json, mounts the views."""
    r = tenv.toolkit("install-hook", "--format", "runc", "--hook-log", str(tenv.base / "snippet-hook.log"))
    assert r.returncode == 0, r.stderr
    snippet = json.loads(r.stdout)
    hook = snippet["hooks"]["createRuntime"][0]
    assert hook["path"].endswith("/lxcfs-hook") and "--lxcfs-dir" in hook["args"]
    hook["args"] += ["--registry-dir", str(tenv.registry)]
    b = tenv.bundle("snippet", free=True)
    b.config["hooks"] = snippet["hooks"]
    b.write()
    ct = tenv.runtime.run("snippet", b)
    _assert_virtual(tenv, ct)
    ct.stop()


def test_classic_bind_fallback_at_create_container(tenv: Env) -> None:
    """The kernel < 5.2 path (no open_tree), forced: at createContainer the lxcfs dir is visible in the container's
    namespace, so a classic MS_BIND from it works; the result must be the same (one slave/private mount each)."""
    b = tenv.bundle("classic", free=True)
    b.add_hook("createContainer", HOOK, tenv.hook_args("createContainer", "--log-level", "debug"),
               env=["PYLXCFS_FORCE_CLASSIC_BIND=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"], timeout=20)
    ct = tenv.runtime.run("classic", b)
    _assert_virtual(tenv, ct)
    log = (tenv.base / "hook.log").read_text()
    assert "container=classic" in log and "(classic)" in log, log
    ct.stop()


def test_dry_run_changes_nothing(tenv: Env) -> None:
    ct = tenv.run("dryrun")
    r = tenv.toolkit("remount", "--container-id", "dryrun", "--dry-run")
    assert r.returncode == 0 and "would remount dryrun" in r.stdout, r
    assert not _lxcfs_by_target(ct)
    ct.stop()


def test_remount_from_another_daemon_replaces_overlays(tenv: Env) -> None:
    """Overlays from a daemon other than the one at --lxcfs-dir (a restarted daemon has a new device) are replaced,
    never stacked; umount then removes them all."""
    ct = tenv.run("switch", hook_stage="createRuntime", free=True)
    old_dev = {m.dev for m in ct.host_mountinfo() if m.is_lxcfs}
    other = C.start_daemon(tenv.base / "lxcfs-other", workdir=tenv.base)
    try:
        # remount gives a daemon 2 s to answer its readiness probe (by design); a just-mounted daemon's first
        # answers can take longer on a loaded machine (seen once), so wait as an operator's start script does.
        r = tenv.toolkit("check-lxcfs", "--wait", "120", "--timeout", "2", lxcfs_dir=other.mountpoint, timeout=150)
        assert r.returncode == 0, r.stdout + r.stderr
        r = tenv.toolkit("remount", "-c", "switch", lxcfs_dir=other.mountpoint)
        assert r.returncode == 0, r.stderr
        new = [m for m in ct.host_mountinfo() if m.is_lxcfs]
        assert {m.dev for m in new} != old_dev and len({m.dev for m in new}) == 1
        assert len(new) == len({m.mountpoint for m in new}), "stacked overlays"
        assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
        assert tenv.toolkit("umount", "-c", "switch").returncode == 0
        assert not _lxcfs_by_target(ct)
        # Registered by the hook for tenv.lxcfs and now without overlays: --all of the OTHER daemon leaves it alone,
        # --all of its own daemon takes it.
        r = tenv.toolkit("remount", "--all", "--json", lxcfs_dir=other.mountpoint)
        assert r.returncode == 0 and "switch" not in {x["id"] for x in json.loads(r.stdout)["results"]}
        r = tenv.toolkit("remount", "--all", "--json")
        assert r.returncode == 0 and "switch" in {x["id"] for x in json.loads(r.stdout)["results"]}, r.stdout
        assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
    finally:
        other.stop()
    ct.stop()
