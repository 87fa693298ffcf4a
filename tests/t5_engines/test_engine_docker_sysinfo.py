"""Docker (dockerd 20.10 + containerd + runc) through contrib/engines/lxcfs-runc with `install-hook --sysinfo`:
the wrapper adds the sysinfo notify rule to the profile Docker wrote (its own default profile), the agent answers
sysinfo(2) with the container's limit, and Docker's rules stay in force. Expectations come from the `--memory` the
test sets and from an unconfined control container, never from the daemon's output."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import containers as ct
from support import engines as eng
from support.engines import Toolkit, require

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "contrib" / "engines" / "lxcfs-runc"
SYSINFO = ct.VENV_BIN / "pylxcfs-sysinfo"
PROBE_SRC = REPO / "tests" / "t4_sysinfo" / "probe.c"
UNSHARE_X86_64 = 272  # Docker's default profile allows unshare(2) only with CAP_SYS_ADMIN: EPERM here
LIMIT = 256 << 20

pytestmark = [pytest.mark.root, pytest.mark.e2e, pytest.mark.fuse]


def _kv(text: str) -> dict[str, int]:
    out = {}
    for tok in text.split():
        k, _, v = tok.partition("=")
        if v.lstrip("-").isdigit():
            out[k] = int(v)
    return out


@pytest.fixture(scope="module")
def agent(lxcfs: ct.Daemon) -> Iterator[Path]:
    """The agent `pylxcfs --sysinfo` would start for this daemon's mount point (the session daemon runs without
    the flag, and may be the C lxcfs: the agent does not depend on it)."""
    from pylxcfs.fuse.config import DaemonConfig
    from pylxcfs.sysinfo import client

    sock = Path(client.socket_for(str(lxcfs.mountpoint)))
    client.start(str(sock), DaemonConfig())
    try:
        yield sock
    finally:
        pidf = Path(str(sock) + ".pid")
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            pid = int(pidf.read_text().split()[0])
            end = time.monotonic() + 20
            while time.monotonic() < end and Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGTERM)  # refused while a listener is live: retried until the containers are gone
                time.sleep(0.5)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory, busybox_image: eng.BusyboxImage, cgroup_parent: str,
           agent: Path) -> Iterator[eng.Dockerd]:
    require("dockerd", "docker", "runc", "jq", "gcc")
    base = tmp_path_factory.mktemp("docker-sysinfo")
    launcher = base / "lxcfs-runc-test"
    launcher.write_text(f'#!/bin/sh\nLXCFS_RUNC_HOOKS={base}/runc-hooks.json LXCFS_RUNC_SYSINFO={SYSINFO} '
                        f'exec {WRAPPER} "$@"\n')
    launcher.chmod(0o755)
    subprocess.run(["gcc", "-static", "-O2", "-pthread", "-o", str(base / "probe"), str(PROBE_SRC)], check=True,
                   capture_output=True, timeout=120)
    dockerd = eng.Dockerd(base, cgroup_parent=cgroup_parent, runtimes={"lxcfs-runc": launcher})
    try:
        dockerd.start()
        dockerd.import_image(busybox_image.tarball)
        yield dockerd
    finally:
        dockerd.close()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="unshare(2) number is x86_64's")
def test_docker_default_profile_plus_sysinfo(docker: eng.Dockerd, toolkit: Toolkit, agent: Path) -> None:
    toolkit("install-hook", "--format", "runc", "--sysinfo", "--dest", str(docker.base / "runc-hooks.json"))
    probe = f"{docker.base / 'probe'}:/probe:ro"
    cid = docker.run_detached("--runtime", "lxcfs-runc", "--memory", "256m", "-v", probe)
    si = _kv(docker.exec(cid, "/probe"))
    assert si["totalram"] * si["mem_unit"] == LIMIT, si
    assert si["phys_pages"] * si["pagesize"] == LIMIT
    free = docker.exec(cid, "free", "-m").splitlines()
    assert int(next(ln for ln in free if ln.strip().startswith("Mem:")).split()[1]) == 256, free

    # Docker's default profile is still in force in the wrapped container, as in a plain one; the unconfined
    # control shows the denial is the profile's, not the kernel's.
    wrapped = _kv(docker.exec(cid, "/probe", "syscall", str(UNSHARE_X86_64)))
    plain = docker.run_detached("--memory", "256m", "-v", probe)
    unconfined = docker.run_detached("--memory", "256m", "--security-opt", "seccomp=unconfined", "-v", probe)
    assert _kv(docker.exec(unconfined, "/probe", "syscall", str(UNSHARE_X86_64)))["ret"] == 0
    assert _kv(docker.exec(plain, "/probe", "syscall", str(UNSHARE_X86_64)))["errno"] == 1
    assert wrapped["errno"] == 1, wrapped
    # the default runtime is untouched: the host's sysinfo
    host = _kv(docker.exec(plain, "/probe"))
    assert host["totalram"] * host["mem_unit"] > LIMIT
    pong = subprocess.run([str(SYSINFO), "ping", "--socket", str(agent)], capture_output=True, text=True,
                          timeout=20, check=True).stdout
    assert int(_kv(pong)["answered"]) >= 2, pong
