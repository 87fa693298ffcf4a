"""lxcfs-hook on bad input and hostile rootfs layouts: a clear error in the log, exit 0 (exit 1 with --strict), and
nothing of the host mounted over. A "fake container" here is a process in its own mount + pid namespace whose rootfs
is a plain directory we lay out (a real runtime would refuse most of these layouts, which is exactly why the hook
must not rely on the runtime for its own safety)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import containers as C
from t4_toolkit.conftest import HOOK, Env, host_snapshot, wait_until

pytestmark = [pytest.mark.root, pytest.mark.fuse]

def _digest(paths: tuple[str, ...] = ("/etc/passwd", "/etc/hostname")) -> dict[str, str]:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths if os.path.exists(p)}


def run_hook(tenv: Env, state: object | str, *extra: str, stage: str = "createRuntime",
             prefix: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess[str], str]:
    log = tenv.base / f"badhook-{time.monotonic_ns()}.log"
    stdin = state if isinstance(state, str) else json.dumps(state)
    args = [HOOK, "--stage", stage, "--lxcfs-dir", str(tenv.lxcfs), "--registry-dir", str(tenv.registry),
            "--log", str(log), *extra]
    r = subprocess.run([*prefix, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False)
    return r, (log.read_text() if log.exists() else "")


class FakeContainer:
    """`unshare -m -p -f` + procfs/sysfs mounted at rootfs/proc and rootfs/sys when those are real directories."""

    def __init__(self, bundle: Path, mount_proc: bool, mount_sys: bool | None = None) -> None:
        self.bundle = bundle
        rootfs = bundle / "rootfs"
        script = 'set -e\n'
        if mount_proc:
            script += f'mount -t proc proc "{rootfs}/proc"\n'
        if mount_proc if mount_sys is None else mount_sys:
            script += f'mount -t sysfs sysfs "{rootfs}/sys"\n'
        script += "exec sleep 300\n"
        self.proc = subprocess.Popen(["unshare", "-m", "-p", "-f", "--propagation", "private", "sh", "-c", script],
                                     stdin=subprocess.DEVNULL)
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        assert wait_until(lambda: children.exists() and children.read_text().strip(), 10)
        self.pid = int(children.read_text().split()[0])
        assert wait_until(lambda: Path(f"/proc/{self.pid}/cmdline").read_bytes().startswith(b"sleep"), 10)

    def mounts(self) -> list[C.MountEntry]:
        return C.mountinfo(self.pid)

    def stop(self) -> None:
        # Kill the pid-namespace init first: killing unshare alone would leave it running (sleep 300).
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(timeout=10)


def _bundle(tenv: Env, name: str, root_path: str = "rootfs") -> Path:
    b = tenv.base / name
    (b / "rootfs").mkdir(parents=True)
    (b / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "root": {"path": root_path}}))
    return b


@pytest.fixture
def guard(tenv: Env) -> Iterator[None]:
    """Host mount table (the relevant part) and sensitive files must be identical after the test."""
    mounts, digests = host_snapshot(tenv.base), _digest()
    yield
    assert host_snapshot(tenv.base) == mounts, "host mount table changed"
    assert _digest() == digests, "a host file changed"


@pytest.mark.parametrize(("stdin", "expect"), [
    ("", "is empty"),
    ("{", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"pid": 5}', "no container id"),
    ('{"id": "x", "pid": "12", "bundle": "/nonexistent"}', "bad pid"),
    ('{"id": "x", "pid": 1234, "bundle": "relative/path"}', "not absolute"),
    ('{"id": "x", "bundle": "/nonexistent-bundle-dir"}', "cannot find the rootfs"),
])
def test_broken_state(tenv: Env, guard: None, stdin: str, expect: str) -> None:
    r, log = run_hook(tenv, stdin)
    assert r.returncode == 0, r.stderr
    assert expect in log and "level=error" in log, log
    r, _ = run_hook(tenv, stdin, "--strict")
    assert r.returncode == 1


def test_dead_pid_and_missing_rootfs(tenv: Env, guard: None) -> None:
    b = _bundle(tenv, "deadpid")
    p = subprocess.Popen(["true"])
    p.wait()
    r, log = run_hook(tenv, {"id": "deadpid", "pid": p.pid, "bundle": str(b), "status": "creating"}, "--strict")
    assert r.returncode == 1 and f"container pid {p.pid} is not running" in log, log
    b2 = _bundle(tenv, "norootfs", root_path="does-not-exist")
    r, log = run_hook(tenv, {"id": "norootfs", "pid": os.getpid(), "bundle": str(b2)})
    assert r.returncode == 0 and "does not exist" in log, log
    # Our own pid: same mount namespace as the hook -> refused, never mounts over the host.
    r, log = run_hook(tenv, {"id": "self", "pid": os.getpid(), "bundle": str(b)}, "--strict")
    assert r.returncode == 1 and "own mount namespace" in log, log
    assert not (tenv.registry / "deadpid.json").exists()


def test_hostile_id_is_never_a_path(tenv: Env, guard: None) -> None:
    b = _bundle(tenv, "hostile-id")
    (b / "rootfs" / "proc").mkdir()
    (b / "rootfs" / "sys").mkdir()
    fc = FakeContainer(b, mount_proc=True)
    try:
        r, log = run_hook(tenv, {"id": "../../escape", "pid": fc.pid, "bundle": str(b)})
        assert r.returncode == 0, r.stderr
        assert "not registering" in log, log
        assert not (tenv.registry.parent.parent / "escape.json").exists()
        assert not list(tenv.base.rglob("escape.json"))
        # The mount work itself is keyed by pid and rootfs, not by the id: it happened inside the fake container.
        assert any(m.is_lxcfs and m.mountpoint == f"{b}/rootfs/proc/meminfo" for m in fc.mounts())
        r, _ = run_hook(tenv, {"id": "../../escape", "pid": fc.pid, "bundle": str(b)}, "--strict")
        assert r.returncode == 1
    finally:
        fc.stop()


def _layout(rootfs: Path, kind: str) -> bool:
    """Lay out a hostile rootfs; returns whether procfs/sysfs should be mounted at rootfs/proc and rootfs/sys."""
    if kind == "proc-symlink-to-host-proc":
        (rootfs / "proc").symlink_to("/proc")
        (rootfs / "sys").symlink_to("/sys")
        return False
    if kind == "proc-symlink-to-root":
        (rootfs / "proc").symlink_to("/")
        (rootfs / "sys").symlink_to("../../../../../../")
        (rootfs / "meminfo").symlink_to("/etc/passwd")
        return False
    if kind == "file-symlinks":
        (rootfs / "proc").mkdir()
        (rootfs / "proc" / "meminfo").symlink_to("/etc/passwd")
        (rootfs / "proc" / "cpuinfo").symlink_to("../../../../../../etc/hostname")
        (rootfs / "proc" / "uptime").write_text("not procfs\n")
        (rootfs / "sys" / "devices" / "system" / "cpu").mkdir(parents=True)
        (rootfs / "sys" / "devices" / "system" / "cpu" / "online").symlink_to("/proc/meminfo")
        return False
    raise AssertionError(kind)


@pytest.mark.parametrize("stage", ["createRuntime", "createContainer"])
@pytest.mark.parametrize("kind", ["proc-symlink-to-host-proc", "proc-symlink-to-root", "file-symlinks"])
def test_planted_symlinks(tenv: Env, guard: None, kind: str, stage: str) -> None:
    b = _bundle(tenv, f"evil-{kind}-{stage}")
    rootfs = b / "rootfs"
    assert not _layout(rootfs, kind)
    state = {"id": f"evil-{kind}", "bundle": str(b)}
    if stage == "createRuntime":
        fc = FakeContainer(b, mount_proc=False)
        try:
            r, log = run_hook(tenv, {**state, "pid": fc.pid}, stage=stage)
            mounts = fc.mounts()
        finally:
            fc.stop()
    else:
        # createContainer: the hook runs in the container's (here: a private copy of the host's) mount namespace,
        # where the host lxcfs dir IS visible, so open_tree succeeds and only the target checks stand in the way.
        script = f'"$@" < "{b}/state.json"; rc=$?; cat /proc/self/mountinfo > "{b}/mountinfo"; exit $rc'
        (b / "state.json").write_text(json.dumps({**state, "pid": 1}))
        log_path = tenv.base / f"evil-{kind}-cc.log"
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", HOOK, "--stage",
                            stage, "--lxcfs-dir", str(tenv.lxcfs), "--registry-dir", str(tenv.registry), "--log",
                            str(log_path)], capture_output=True, text=True, timeout=60, check=False)
        log = log_path.read_text()
        mounts = C.parse_mountinfo((b / "mountinfo").read_text())
    assert r.returncode == 0, (r.stderr, log)
    # A bind of one lxcfs file has a mount root like "/proc/meminfo"; daemon mounts (ours, other people's) have "/".
    lxcfs_mounts = [m.mountpoint for m in mounts if m.is_lxcfs and m.root != "/"]
    assert lxcfs_mounts == [], f"mounted through a planted symlink: {lxcfs_mounts}\n{log}"
    assert "level=error" in log or "skipped" in log, log
    if kind == "file-symlinks":
        assert "refused: target is a symlink" in log and "not on procfs" in log, log


def test_crun_state_dialect(tenv: Env, guard: None) -> None:
    """crun hands `"root": "rootfs"` (relative to the bundle) and no usable config.json root here; createRuntime gets
    the host pid. crun itself cannot run on this hybrid host (see test_crun_runtime), so a fake container with a real
    procfs at rootfs/proc stands in for its namespace."""
    b = tenv.base / "crun-dialect"
    for d in ("proc", "sys"):
        (b / "rootfs" / d).mkdir(parents=True)
    fc = FakeContainer(b, mount_proc=True)
    try:
        r, log = run_hook(tenv, {"ociVersion": "1.0", "id": "crun-dialect", "pid": fc.pid, "root": "rootfs",
                                 "bundle": str(b), "status": "created"}, "--strict")
        assert r.returncode == 0, log
        binds = {m.mountpoint for m in fc.mounts() if m.is_lxcfs and m.root != "/"}
        assert f"{b}/rootfs/proc/meminfo" in binds and f"{b}/rootfs/sys/devices/system/cpu" in binds, log
        assert all(not m.is_shared for m in fc.mounts() if m.is_lxcfs and m.root != "/")
        assert json.loads((tenv.registry / "crun-dialect.json").read_text())["pid"] == fc.pid
    finally:
        fc.stop()


def test_usage_errors_fail_open() -> None:
    """A wrong hook entry (unknown flag, bad value) must not block every start: exit 0, the error on stderr; 2 with
    --strict."""
    for args in (["--bogus"], ["--timeout", "-1"], ["--stage", "poststart"]):
        r = subprocess.run([HOOK, *args], input="{}", capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0 and "error" in r.stderr, (args, r)
        r = subprocess.run([HOOK, *args, "--strict"], input="{}", capture_output=True, text=True, timeout=30,
                           check=False)
        assert r.returncode == 2, (args, r)


def _hook_in_private_ns(tenv: Env, b: Path, state: dict[str, object], *hook_args: str
                        ) -> tuple[subprocess.CompletedProcess[str], str, list[C.MountEntry]]:
    """Run the hook in a private copy of the host's mount namespace (`unshare -m`), as a hook run by hand or by a
    confused runtime would be; returns its result, its log and that namespace's mount table right after."""
    script = f'"$@" < "{b}/state.json"; rc=$?; cat /proc/self/mountinfo > "{b}/mountinfo"; exit $rc'
    (b / "state.json").write_text(json.dumps(state))
    log_path = tenv.base / f"{b.name}.log"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", HOOK, *hook_args,
                        "--lxcfs-dir", str(tenv.lxcfs), "--registry-dir", str(tenv.registry), "--log",
                        str(log_path)], capture_output=True, text=True, timeout=60, check=False)
    return r, log_path.read_text(), C.parse_mountinfo((b / "mountinfo").read_text())


@pytest.mark.parametrize("pid", [1, 0, None])
def test_no_stage_in_a_private_namespace_with_root_slash(tenv: Env, guard: None, pid: int | None) -> None:
    """Without --stage, a state pid of 1/0/none tells nothing about where the hook runs: it must not be taken as
    createContainer (which once mounted every file over /proc of the hook's own namespace with "root": "/")."""
    b = _bundle(tenv, f"nostage-{pid}")
    state: dict[str, object] = {"id": f"nostage-{pid}", "root": "/", "bundle": str(b)}
    if pid is not None:
        state["pid"] = pid
    r, log, mounts = _hook_in_private_ns(tenv, b, state)
    assert r.returncode == 0, (r.stderr, log)
    assert "no --stage given" in log and "level=error" in log, log
    assert [m.mountpoint for m in mounts if m.is_lxcfs and m.root != "/"] == [], log
    r, _log, _m = _hook_in_private_ns(tenv, b, state, "--strict")
    assert r.returncode == 1


def test_inside_stage_refuses_root_slash_and_the_host_namespace(tenv: Env, guard: None) -> None:
    b = _bundle(tenv, "inside-root-slash")
    r, log, mounts = _hook_in_private_ns(tenv, b, {"id": "inside-root-slash", "pid": 1, "root": "/"},
                                         "--stage", "createContainer")
    assert r.returncode == 0 and 'the rootfs is / itself' in log, log
    assert [m.mountpoint for m in mounts if m.is_lxcfs and m.root != "/"] == []
    # createContainer run in the HOST's mount namespace (pid 1's): refused before anything is resolved.
    b2 = _bundle(tenv, "inside-host-ns")
    (b2 / "rootfs" / "proc").mkdir()
    r, log = run_hook(tenv, {"id": "inside-host-ns", "pid": 1, "bundle": str(b2)}, "--strict",
                      stage="createContainer")
    assert r.returncode == 1 and "host's mount namespace" in log, log


def test_no_stage_with_a_host_pid_is_a_host_stage(tenv: Env, guard: None) -> None:
    """The one fact the hook may derive a stage from: a live pid > 1 in another mount namespace."""
    b = tenv.base / "nostage-hostpid"
    for d in ("proc", "sys"):
        (b / "rootfs" / d).mkdir(parents=True)
    fc = FakeContainer(b, mount_proc=True)
    try:
        stdin = json.dumps({"id": "nostage-hostpid", "pid": fc.pid, "root": str(b / "rootfs")})
        log_path = tenv.base / "nostage-hostpid.log"
        r = subprocess.run([HOOK, "--lxcfs-dir", str(tenv.lxcfs), "--registry-dir", str(tenv.registry), "--log",
                            str(log_path), "--strict"], input=stdin, capture_output=True, text=True, timeout=60,
                           check=False)
        log = log_path.read_text()
        assert r.returncode == 0 and "stage=createRuntime" in log, log
        assert any(m.is_lxcfs and m.mountpoint == f"{b}/rootfs/proc/meminfo" for m in fc.mounts()), log
    finally:
        fc.stop()


@pytest.mark.parametrize("kind", ["fifo", "device", "deep-json", "directory"])
def test_hostile_config_json(tenv: Env, guard: None, kind: str) -> None:
    """config.json a tenant (or a broken engine) planted: a clear error within the deadline, never a hang."""
    b = tenv.base / f"cfg-{kind}"
    (b / "rootfs").mkdir(parents=True)
    cfg = b / "config.json"
    expect = {"fifo": "is a FIFO", "device": "is a character device", "deep-json": "nested too deeply",
              "directory": "is a directory"}[kind]
    if kind == "fifo":
        os.mkfifo(cfg)
    elif kind == "device":
        cfg.symlink_to("/dev/zero")
    elif kind == "deep-json":
        cfg.write_text("[" * 100_000 + "]" * 100_000)
    else:
        cfg.mkdir()
    t0 = time.monotonic()
    r, log = run_hook(tenv, {"id": f"cfg-{kind}", "pid": os.getpid(), "bundle": str(b)}, "--strict",
                      "--timeout", "3")
    elapsed = time.monotonic() - t0
    assert r.returncode == 1 and expect in log and "config.json" in log, log
    assert elapsed < 30, f"the hook took {elapsed:.1f}s"  # the FIFO once hung it until it was killed
    assert "Traceback" not in r.stderr and "unexpected error" not in log, log


def test_deep_json_state_on_stdin(tenv: Env, guard: None) -> None:
    r, log = run_hook(tenv, "[" * 100_000 + "]" * 100_000, "--strict")
    assert r.returncode == 1 and "nested too deeply" in log and "unexpected error" not in log, log


@pytest.mark.parametrize("kind", ["symlink", "fifo", "foreign-owner"])
def test_log_path_planted(tenv: Env, guard: None, kind: str) -> None:
    """--log never writes through a symlink, into a FIFO or device, or into a file someone else owns: the hook
    says so on stderr and logs there instead (still fail-open)."""
    d = tenv.base / f"logplant-{kind}"
    d.mkdir()
    victim = d / "victim"
    victim.write_text("")
    path = d / "hook.log"
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("")
        os.chown(path, 65534, 65534)
    r = subprocess.run([HOOK, "--stage", "createRuntime", "--log", str(path), "--registry-dir", str(tenv.registry)],
                       input="{", capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0
    assert f"cannot open log file {path}" in r.stderr and "refusing" in r.stderr, r.stderr
    assert "not valid JSON" in r.stderr  # the real error still reaches someone
    assert victim.read_text() == ""
    if kind == "foreign-owner":
        assert path.read_text() == ""


def test_log_escapes_control_and_bidi(tenv: Env, guard: None) -> None:
    """An id with U+202E (right-to-left override), an ANSI escape and a newline is logged escaped."""
    r, log = run_hook(tenv, {"id": "ab\u202ecd\x1b[31m\nlevel=info", "pid": 0, "bundle": "/nonexistent"})
    assert r.returncode == 0
    assert "\u202e" not in log and "\x1b" not in log and "\\u202e" in log and "\\x1b" in log, repr(log)
    assert all(line.startswith('time="') for line in log.splitlines()), repr(log)


def test_targets_the_container_lacks_are_skipped(tenv: Env, guard: None) -> None:
    """Only what the container has is covered: with procfs but no sysfs in the rootfs, the /proc files are mounted
    and the /sys/devices/system/cpu view is skipped (not an error, nothing created in the rootfs)."""
    b = tenv.base / "lacks-sys"
    for d in ("proc", "sys"):
        (b / "rootfs" / d).mkdir(parents=True)
    fc = FakeContainer(b, mount_proc=True, mount_sys=False)
    try:
        r, log = run_hook(tenv, {"id": "lacks-sys", "pid": fc.pid, "root": str(b / "rootfs")}, "--strict")
        assert r.returncode == 0, log
        binds = {m.mountpoint for m in fc.mounts() if m.is_lxcfs and m.root != "/"}
        assert f"{b}/rootfs/proc/meminfo" in binds, log
        assert not any(p.startswith(f"{b}/rootfs/sys") for p in binds), binds
        assert "target missing in the container" in log and "target=/sys/devices/system/cpu" in log, log
        assert list((b / "rootfs" / "sys").iterdir()) == []
    finally:
        fc.stop()
