"""The toolkit's command line against real runc containers: id resolution (exact, unique prefix, name; ambiguous
and unknown exit 1 with candidates; hostile ids), usage errors and exit codes, --all partial failure (exit 0, or 2
with --strict) with a summary line, prestart (in a private mount namespace) and install-hook."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import containers as C
from support.meminfo import host_memtotal_kib, meminfo_kib
from t4_toolkit.conftest import HOOK, TOOLKIT, Env, read_in, wait_until

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.e2e]


@pytest.fixture(scope="module")
def trio(tenv: Env) -> Iterator[list[C.Container]]:
    cts = [tenv.run(n) for n in ("ab1", "ab2", "xyz")]
    yield cts
    for c in cts:
        c.stop()


def test_id_resolution(tenv: Env, trio: list[C.Container]) -> None:
    r = tenv.toolkit("remount", "-c", "ab")
    assert r.returncode == 1
    assert "ambiguous" in r.stderr and "ab1" in r.stderr and "ab2" in r.stderr
    r = tenv.toolkit("remount", "-c", "ab1")
    assert r.returncode == 0, r.stderr
    assert meminfo_kib(read_in(trio[0], "/proc/meminfo")) == C.GIB // 1024
    r = tenv.toolkit("umount", "-c", "ab1")
    assert r.returncode == 0, r.stderr
    r = tenv.toolkit("remount", "-c", "xy")  # unique prefix
    assert r.returncode == 0, r.stderr
    assert meminfo_kib(read_in(trio[2], "/proc/meminfo")) == C.GIB // 1024
    r = tenv.toolkit("umount", "--container-id", "xyz")
    assert r.returncode == 0, r.stderr
    assert meminfo_kib(read_in(trio[2], "/proc/meminfo")) == host_memtotal_kib()
    for hostile in ("../../etc", "/etc/passwd", "ab1/../../../", "nope"):
        r = tenv.toolkit("remount", "-c", hostile)
        assert r.returncode == 1 and "No such container" in r.stderr, (hostile, r.stderr)
    assert tenv.toolkit("remount", "-c", "  ").returncode == 1


def test_name_resolution(tenv: Env) -> None:
    b = tenv.bundle("named-0123", hook_stage="createRuntime")
    b.config["annotations"] = {"io.lxcfs.name": "webapp"}
    b.write()
    ct = tenv.runtime.run("named-0123", b)
    r = tenv.toolkit("umount", "-c", "webapp")
    assert r.returncode == 0, r.stderr
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == host_memtotal_kib()
    r = tenv.toolkit("remount", "-c", "webapp")
    assert r.returncode == 0, r.stderr
    assert meminfo_kib(read_in(ct, "/proc/meminfo")) == C.GIB // 1024
    ct.stop()


def test_usage_and_exit_codes(tenv: Env) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TOOLKIT, *args], env=tenv.env(), capture_output=True, text=True, timeout=30,
                              check=False)

    assert run("bogus").returncode == 3
    assert run("remount", "--bogus").returncode == 1
    assert run("remount").returncode == 1 and "choose" in run("remount").stderr
    assert run("umount", "extra-positional").returncode == 1
    assert run("--version").returncode == 0
    assert run().returncode == 0
    h = run("--help")
    assert h.returncode == 0 and "check-lxcfs" in h.stdout and "hung" in h.stdout
    assert run("--log-level", "loud", "check-lxcfs").returncode == 1
    assert run("remount", "--pid", "999999999").returncode == 1


def test_all_partial_failure_summary_and_strict(tenv: Env) -> None:
    """One registered container whose /proc/meminfo is covered by a plain file (the engine's bind): the toolkit
    refuses to mount over a non-procfs target, so that container fails while the other succeeds."""
    fake = tenv.base / "fake-meminfo"
    fake.write_text("MemTotal:  1 kB\n")
    bad = tenv.bundle("partial-bad", hook_stage="createRuntime")
    bad.config["mounts"].append({"destination": "/proc/meminfo", "type": "bind", "source": str(fake),
                                 "options": ["bind", "ro"]})
    bad.write()
    cbad = tenv.runtime.run("partial-bad", bad)
    cgood = tenv.run("partial-good", hook_stage="createRuntime")
    r = tenv.toolkit("remount", "--all", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    res = {x["id"]: x for x in out["results"]}
    assert res["partial-good"]["status"] == "ok"
    assert res["partial-bad"]["status"] == "failed" and "not on procfs" in res["partial-bad"]["error"]
    nfailed = sum(1 for x in out["results"] if x["status"] != "ok")
    assert f"{len(res) - nfailed} ok, {nfailed} failed, {len(res)} total" in out["summary"]
    r = tenv.toolkit("remount", "--all", "--strict")
    assert r.returncode == 2
    assert "failed" in r.stdout.splitlines()[-1]  # the summary line
    assert read_in(cbad, "/proc/meminfo").startswith("MemTotal:  1 kB")  # the engine's bind is left alone
    cbad.stop()
    cgood.stop()


def test_prestart_in_private_namespace(tenv: Env) -> None:
    d = tenv.base / "prestart" / "lxcfs"
    script = f'set -e; "{TOOLKIT}" --lxcfs-dir "{d}" prestart; "{TOOLKIT}" --lxcfs-dir "{d}" prestart; ' \
             "cat /proc/self/mountinfo"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    at = [m for m in C.parse_mountinfo(r.stdout) if m.mountpoint == str(d)]
    assert len(at) == 1, at  # idempotent: one bind, never stacked
    assert at[0].is_shared  # so rslave container copies receive the daemon's mount
    assert d.is_dir() and not C.mounts_at(d)  # nothing leaked to the host namespace


def test_prestart_leaves_a_live_daemon_alone(tenv: Env) -> None:
    before = C.mounts_at(tenv.lxcfs)
    r = tenv.toolkit("prestart")
    assert r.returncode == 0, r.stderr
    assert "leaving it alone" in r.stderr
    assert C.mounts_at(tenv.lxcfs) == before
    assert tenv.toolkit("check-lxcfs").returncode == 0


def test_install_hook_formats(tenv: Env, tmp_path: Path) -> None:
    dest = tmp_path / "hooks" / "hookspec.json"
    r = tenv.toolkit("install-hook", "--format", "isulad", "--dest", str(dest), "--hook-log", "/var/log/x.log")
    assert r.returncode == 0, r.stderr
    spec = json.loads(dest.read_text())
    (entry,) = spec["prestart"]
    assert os.path.isabs(entry["path"]) and entry["args"][:5] == ["lxcfs-hook", "--stage", "prestart", "--log",
                                                                   "/var/log/x.log"]
    assert spec["poststart"] == [] and spec["poststop"] == [] and entry["timeout"] >= 1
    assert stat.S_IMODE(dest.stat().st_mode) & 0o022 == 0  # iSulad refuses group/world-writable specs
    r = tenv.toolkit("install-hook", "--format", "hooksd")
    h = json.loads(r.stdout)
    assert h["version"] == "1.0.0" and h["stages"] == ["createRuntime"]
    assert "--stage" in h["hook"]["args"] and h["when"]["annotations"]
    h = json.loads(tenv.toolkit("install-hook", "--format", "hooksd", "--always").stdout)
    assert h["when"] == {"always": True}
    assert tenv.toolkit("install-hook", "--format", "nope").returncode == 1


def _inner_pid(p: subprocess.Popen[bytes]) -> int:
    children = Path(f"/proc/{p.pid}/task/{p.pid}/children")
    deadline = time.monotonic() + 10
    while not (children.exists() and children.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(children.read_text().split()[0])


@pytest.mark.parametrize("tenant", ["plain-namespace", "userns-with-lxcfs-bind"])
def test_procscan_namespaces_are_never_taken_by_all(tenv: Env, tenant: str) -> None:
    """The /proc scan finds pid-namespace inits in their own mount namespace, for an explicit --container-id; but
    `--all` (even with --include-unconfigured) acts only on what the registry or an engine says is a container. The
    second tenant is what any user can make: `unshare -Urmpf` with a lxcfs file bound over its own /proc/meminfo."""
    if tenant == "plain-namespace":
        cmd = ["unshare", "-m", "-p", "-f", "--propagation", "private", "sleep", "60"]
    else:
        cmd = ["unshare", "-Urmpf", "--mount-proc", "sh", "-c",
               f"mount --bind {tenv.lxcfs}/proc/meminfo /proc/meminfo && exec sleep 60"]
    p = subprocess.Popen(cmd)
    inner = -1
    try:
        inner = _inner_pid(p)
        if tenant != "plain-namespace":
            assert wait_until(lambda: any(m.is_lxcfs and m.mountpoint == "/proc/meminfo"
                                          for m in C.mountinfo(inner)), 10), "the tenant's bind did not happen"
        env = {**tenv.env(), "PYLXCFS_PROCSCAN": "1"}

        def toolkit(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([TOOLKIT, "--lxcfs-dir", str(tenv.lxcfs), *args], env=env, capture_output=True,
                                  text=True, timeout=60, check=False)

        r = toolkit("remount", "--container-id", f"pid-{inner}", "--dry-run")
        assert r.returncode == 0 and f"would remount pid-{inner} (pid {inner}, procscan)" in r.stdout, r
        for args in (["remount", "--all"], ["remount", "--all", "--include-unconfigured"], ["umount", "--all"],
                     ["umount", "--all", "--include-unconfigured"]):
            r = toolkit(*args, "--dry-run")
            assert r.returncode == 0 and f"pid-{inner}" not in r.stdout, (args, r.stdout)
        before = [(m.mount_id, m.mountpoint) for m in C.mountinfo(inner)]
        assert toolkit("remount", "--all", "--include-unconfigured").returncode == 0
        assert [(m.mount_id, m.mountpoint) for m in C.mountinfo(inner)] == before
    finally:
        with contextlib.suppress(Exception):
            os.kill(inner, signal.SIGKILL)
        p.kill()
        p.wait(timeout=10)


def test_poststop_unregisters(tenv: Env) -> None:
    ct = tenv.run("poststop-ct", hook_stage="createRuntime")
    rec = tenv.registry / "poststop-ct.json"
    assert rec.exists()
    state = json.dumps({"ociVersion": "1.0.2", "id": "poststop-ct", "status": "stopped", "bundle": "/x"})
    r = subprocess.run([HOOK, "--stage", "poststop", "--registry-dir", str(tenv.registry)], input=state,
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0 and not rec.exists(), r.stderr
    ct.stop()
