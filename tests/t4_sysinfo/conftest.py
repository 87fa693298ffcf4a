"""Fixtures for the sysinfo(2) tests (tier 4: root, real FUSE daemon started with --sysinfo, its real agent, real runc
containers with a busybox rootfs and a static C probe built here with gcc -static).

Everything lives under the module's tmp dir (daemon mount point, agent socket, runc root, bundles); the cgroup
parent is pylxcfs-test-sysinfo-<pid>. The agent outlives the daemon by design, so teardown stops it by the pid in
its own pidfile, after every container is gone (it refuses SIGTERM while it holds a live listener).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support import containers as C

HERE = Path(__file__).resolve().parent
TOOLKIT = str(C.VENV_BIN / "isulad-lxcfs-toolkit")
SYSINFO = str(C.VENV_BIN / "pylxcfs-sysinfo")
LIMIT = 256 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_probe(dest: Path) -> Path:
    out = dest / "sysinfo-probe"
    subprocess.run(["gcc", "-static", "-O2", "-pthread", "-o", str(out), str(HERE / "probe.c")], check=True,
                   capture_output=True, timeout=120)
    return out


def parse_kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.split():
        k, _, v = line.partition("=")
        if v.lstrip("-").isdigit():
            out[k] = int(v)
    return out


def agent_pid(sock: Path) -> int | None:
    # IndexError: the agent is rewriting its pid file (empty for an instant during a hand-over).
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(str(sock) + ".pid").read_text().split()[0])
    return None


def ping(sock: Path) -> dict[str, str] | None:
    r = subprocess.run([SYSINFO, "ping", "--socket", str(sock)], capture_output=True, text=True, timeout=20,
                       check=False)
    if r.returncode != 0:
        return None
    return dict(kv.split("=", 1) for kv in r.stdout.split())


def stop_agent(sock: Path, timeout: float = 15.0) -> None:
    pid = agent_pid(sock)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_until(pred: Any, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@dataclass
class Env:
    base: Path
    runtime: C.Runtime
    cgroup: str
    lxcfs: Path
    probe: Path
    daemon: C.Daemon | None = None
    n: list[int] = field(default_factory=lambda: [0])

    @property
    def sock(self) -> Path:
        return Path(str(self.lxcfs) + ".sysinfo.sock")

    def start_daemon(self, *extra: str) -> C.Daemon:
        self.daemon = C.start_daemon(self.lxcfs, args=["--sysinfo", *extra], workdir=self.base)
        assert wait_until(lambda: ping(self.sock) is not None), "the daemon's --sysinfo agent does not answer"
        return self.daemon

    def fragment(self) -> dict[str, Any]:
        r = subprocess.run([TOOLKIT, "--lxcfs-dir", str(self.lxcfs), "install-hook", "--format", "runc",
                            "--sysinfo", "--hook-log", str(self.base / "hook.log")],
                           capture_output=True, text=True, timeout=60, check=True)
        return dict(json.loads(r.stdout))

    def bundle(self, name: str | None = None, *, args: tuple[str, ...] = ("sleep", "100000"),
               seccomp: dict[str, Any] | None = None, fragment: bool = True) -> C.Bundle:
        """A bundle with the probe; with `fragment` the install-hook --sysinfo fragment applied as documented
        (hooks appended; seccomp: its own when the config has none, else `pylxcfs-sysinfo merge`)."""
        self.n[0] += 1
        name = name or f"s{self.n[0]}"
        b = C.make_bundle(self.base, name, memory_bytes=LIMIT, cgroup_parent=self.cgroup, args=args)
        shutil.copy2(self.probe, b.rootfs / "bin" / "probe")
        if seccomp is not None:
            b.config.setdefault("linux", {})["seccomp"] = seccomp
        if fragment:
            frag = self.fragment()
            for stage, hooks in frag["hooks"].items():
                b.config.setdefault("hooks", {}).setdefault(stage, []).extend(hooks)
            if seccomp is None:
                b.config["linux"]["seccomp"] = frag["linux"]["seccomp"]
        b.write()
        if fragment and seccomp is not None:
            subprocess.run([SYSINFO, "merge", "--socket", str(self.sock), "--config", str(b.config_path)],
                           check=True, capture_output=True, timeout=30)
            b.config = json.loads(b.config_path.read_text())
        return b

    def run(self, name: str | None = None, **kw: Any) -> C.Container:
        b = self.bundle(name, **kw)
        return self.runtime.run(b.path.name, b)


@pytest.fixture(scope="module")
def senv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    assert os.geteuid() == 0, "sysinfo tests need root"
    assert shutil.which("gcc"), "gcc missing (make install)"
    base = tmp_path_factory.mktemp("sysinfo")
    env = Env(base, C.Runtime(base / "runc"), C.cgroup_parent_name("sysinfo"), base / "lxcfs", build_probe(base))
    try:
        env.start_daemon()
        yield env
    finally:
        env.runtime.cleanup()
        if env.daemon is not None:
            env.daemon.stop()
        C.remove_cgroup_parent(env.cgroup)
        # The listeners close once their containers are gone (POLLHUP); then the agent accepts SIGTERM.
        wait_until(lambda: (ping(env.sock) or {}).get("listeners") == "0", 15)
        stop_agent(env.sock)
