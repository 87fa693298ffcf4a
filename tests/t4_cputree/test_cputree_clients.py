"""Real clients in a runc container limited to cpuset "1" (not CPU 0) and 768 MiB, with the daemon's files bound by
the real lxcfs-hook (/sys/devices/system/cpu as one directory bind): every CPU count and CPU list they report must
be the cpuset's, by host id. Expected values come from the cpuset we set and from the host's own sysfs; the C
lxcfs 5.0.3 runs in the same module and the differences are asserted, each with its reason."""

from __future__ import annotations

import os
import re

import pytest

from support import containers as C

from .conftest import Env

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.e2e]

CPU = "/sys/devices/system/cpu"
CPUSET = "1"
HOST_SYS = "/sys/devices/system/cpu"


def _host_cpus() -> list[str]:
    return sorted((n for n in os.listdir(HOST_SYS) if re.fullmatch(r"cpu\d+", n)), key=lambda n: int(n[3:]))


@pytest.fixture(scope="module")
def ours(cenv: Env) -> C.Container:
    if len(_host_cpus()) < 2:
        pytest.fail("needs a host with at least 2 CPUs (this machine kind has 2)")
    return cenv.run("pylxcfs", CPUSET)


@pytest.fixture(scope="module")
def theirs(cenv: Env) -> C.Container:
    return cenv.run("lxcfs", CPUSET)


def sh(ct: C.Container, script: str, timeout: float = 60) -> str:
    r = ct.sh(script, timeout=timeout)
    assert r.returncode == 0, f"{script!r} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def lscpu_fields(ct: C.Container) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in sh(ct, "lscpu").splitlines())}


def test_the_cpu_directory_is_one_lxcfs_directory_mount(ours: C.Container) -> None:
    here = [m for m in ours.mountinfo() if m.is_lxcfs and m.mountpoint.startswith(CPU)]
    assert [m.mountpoint for m in here] == [CPU], here  # one directory bind, no file binds below it
    assert not here[0].is_shared


def test_lists_name_the_cpuset_by_host_id(ours: C.Container) -> None:
    out = sh(ours, f"for f in online possible present offline; do echo \"$f=$(cat {CPU}/$f)\"; done")
    assert out.split() == [f"online={CPUSET}", f"possible={CPUSET}", f"present={CPUSET}", "offline="]
    names = sh(ours, f"ls {CPU}").split()
    host = set(os.listdir(HOST_SYS))
    assert set(names) == host - {c for c in _host_cpus() if c != f"cpu{CPUSET}"}, (names, host)
    assert len(names) == len(set(names))  # each entry once (the C lxcfs 5.0 lists `online` twice)
    assert sh(ours, f"ls -d {CPU}/cpu0 2>/dev/null || echo absent").strip() == "absent"


def test_cpu_subtree_and_symlinks_are_the_hosts(ours: C.Container) -> None:
    d = f"{HOST_SYS}/cpu{CPUSET}"
    for rel in ("topology/core_id", "topology/thread_siblings_list", "cache/index0/size", "uevent"):
        if os.path.exists(f"{d}/{rel}"):
            with open(f"{d}/{rel}") as f:
                assert sh(ours, f"cat {CPU}/cpu{CPUSET}/{rel}") == f.read(), rel
    for name in sorted(os.listdir(d)):
        if os.path.islink(f"{d}/{name}"):
            assert sh(ours, f"readlink {CPU}/cpu{CPUSET}/{name}").strip() == os.readlink(f"{d}/{name}"), name
    # nothing in the tree is writable for the container (sysfs itself is read-only in a container too)
    r = ours.sh(f"echo 0 > {CPU}/cpu{CPUSET}/online")
    assert r.returncode != 0


def test_taskset_accepts_the_ids_from_sysfs(ours: C.Container) -> None:
    out = sh(ours, f"taskset -c $(cut -d- -f1 {CPU}/online) sh -c 'taskset -pc $$'")
    assert out.strip().endswith(f"list: {CPUSET}"), out


def test_counts_agree_with_the_cpuset(ours: C.Container) -> None:
    out = sh(ours, "nproc; nproc --all; getconf _NPROCESSORS_ONLN; getconf _NPROCESSORS_CONF; "
                   "python3 -c 'import os; print(os.cpu_count())'; "
                   "node -e 'console.log(require(\"os\").cpus().length)'")
    assert out.split() == ["1"] * 6, out


def test_java_without_container_support_sees_one_cpu(ours: C.Container) -> None:
    src = ("class P { public static void main(String[] a) { "
           "System.out.println(Runtime.getRuntime().availableProcessors()); } }")
    out = sh(ours, f"mkdir -p /tmp/j && echo '{src}' > /tmp/j/P.java && "
                   "java -XX:-UseContainerSupport -Xmx64m -Xshare:auto /tmp/j/P.java", timeout=120)
    assert out.split()[-1] == "1", out


def test_lscpu(ours: C.Container) -> None:
    f = lscpu_fields(ours)
    assert (f["CPU(s)"], f["On-line CPU(s) list"]) == ("1", CPUSET), f
    assert "Off-line CPU(s) list" not in f, f


def test_mpstat_names_the_cpu_like_sysfs(ours: C.Container) -> None:
    out = sh(ours, "mpstat -P ALL 1 1")
    cpus = {ln.split()[1] for ln in out.splitlines() if ln.startswith("Average:") and ln.split()[1] not in ("CPU",)}
    assert cpus == {"all", CPUSET}, out
    rows = [ln.split()[0] for ln in sh(ours, "cat /proc/stat").splitlines() if ln.startswith("cpu")]
    assert rows == ["cpu", f"cpu{CPUSET}"]
    # /proc/cpuinfo keeps its renumbered topology (processor 0..n-1)
    assert re.findall(r"^processor\s*:\s*(\d+)", sh(ours, "cat /proc/cpuinfo"), re.M) == ["0"]


def test_a_host_caller_sees_the_host_tree(cenv: Env, ours: C.Container) -> None:
    mnt = cenv.lxcfs_dir("pylxcfs") / "sys/devices/system/cpu"
    assert sorted(os.listdir(mnt)) == sorted(os.listdir(HOST_SYS))
    for f in ("online", "possible", "present", "offline"):
        with open(f"{HOST_SYS}/{f}") as host:
            assert (mnt / f).read_text() == host.read()


def test_umount_restores_the_host_tree_and_remount_brings_it_back(cenv: Env, ours: C.Container) -> None:
    r = cenv.toolkit("pylxcfs", "umount", "--container-id", ours.id)
    assert r.returncode == 0, r.stderr
    assert not [m for m in ours.mountinfo() if m.is_lxcfs]
    with open(f"{HOST_SYS}/possible") as host:
        assert sh(ours, f"cat {CPU}/possible") == host.read()
    assert sh(ours, f"ls -d {CPU}/cpu0").strip() == f"{CPU}/cpu0"
    r = cenv.toolkit("pylxcfs", "remount", "--container-id", ours.id)
    assert r.returncode == 0, r.stderr
    assert sh(ours, f"cat {CPU}/possible").strip() == CPUSET
    assert sh(ours, "nproc --all").strip() == "1"


def test_compared_with_c_lxcfs(theirs: C.Container, ours: C.Container) -> None:
    # Where C lxcfs 5.0.3 serves the file, it agrees with us: online is the raw cpuset, /proc/stat keeps the
    # physical number, cpuinfo is renumbered.
    assert sh(theirs, f"cat {CPU}/online").strip() == CPUSET
    assert [ln.split()[0] for ln in sh(theirs, "cat /proc/stat").splitlines() if ln.startswith("cpu")] == \
        ["cpu", f"cpu{CPUSET}"]
    assert sh(theirs, "nproc; getconf _NPROCESSORS_ONLN").split() == ["1", "1"]
    # Where we differ, on purpose: 5.0.3 passes possible/present through and does not hide cpu0, so
    # nproc --all, _NPROCESSORS_CONF and lscpu's CPU(s) are the host's, with the other CPUs "off-line".
    host_n = str(len(_host_cpus()))
    assert sh(theirs, "nproc --all; getconf _NPROCESSORS_CONF").split() == [host_n, host_n]
    f = lscpu_fields(theirs)
    assert f["CPU(s)"] == host_n and f["On-line CPU(s) list"] == CPUSET
    assert "cpu0" in sh(theirs, f"ls {CPU}").split()
