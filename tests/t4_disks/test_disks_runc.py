"""diskstats and partitions in a fresh runc container, read by the container's own tools before and after I/O.

A container gets a loop device through linux.devices (named as on the host, so procps `vmstat -d`, which reads
/proc/diskstats but shows only names /sys/block knows, lists it), a throttle rule for it (the only v1 blk-mq
source of per-cgroup counters), the daemon's mount at /lxcfs and /proc/diskstats bound from it (runc allows that
bind, as for LXCFS).
Before the container does any block I/O, its diskstats must already list that disk and its root disk (as `sda`)
with zero counters; after direct reads, the disk's row must carry the cgroup's own counters. Expected values come
from the cgroup's statistics files, the host's sysfs and the I/O the test makes the container do.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import containers as C

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.e2e]

IMG_BYTES = 8 << 20
READS = 32  # 4 KiB direct reads the container does on the loop device in the second half


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[tuple[str, tuple[int, int]]]:
    img = tmp_path / "img"
    with open(img, "wb") as f:
        f.truncate(IMG_BYTES)
    path = subprocess.run(["losetup", "-f", "--show", str(img)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        st = os.stat(path)
        yield path, (os.major(st.st_rdev), os.minor(st.st_rdev))
    finally:
        subprocess.run(["losetup", "-d", path], check=False)


def _rows(text: str) -> dict[str, tuple[int, int, list[int]]]:
    out = {}
    for line in text.splitlines():
        f = line.split()
        out[f[2]] = (int(f[0]), int(f[1]), [int(x) for x in f[3:]])
    return out


def _throttle(cg: Path, dev: tuple[int, int]) -> dict[str, int]:
    got: dict[str, int] = {}
    for line in (cg / "blkio.throttle.io_serviced_recursive").read_text().splitlines():
        f = line.split()
        if len(f) == 3 and f[0] == f"{dev[0]}:{dev[1]}":
            got[f[1]] = int(f[2])
    return got


def test_fresh_container_lists_its_disks_before_any_io(tmp_path: Path, loop: tuple[str, tuple[int, int]]) -> None:
    loop_path, loop_dev = loop
    name = os.path.basename(loop_path)
    mnt = tmp_path / "lxcfs"
    daemon = C.start_daemon(mnt)
    cgp = C.cgroup_parent_name("disks")
    rt = C.Runtime(tmp_path / "runc")
    try:
        b = C.make_bundle(tmp_path, "ct", cgroup_parent=cgp)
        C.add_host_binary(b.rootfs, "/usr/bin/vmstat")
        linux = b.config["linux"]
        linux["devices"] = [{"path": f"/dev/{name}", "type": "b", "major": loop_dev[0], "minor": loop_dev[1],
                             "fileMode": 0o660, "uid": 0, "gid": 0}]
        res = linux["resources"]
        res["devices"] = [*res.get("devices", []), {"allow": True, "type": "b", "major": loop_dev[0],
                                                   "minor": loop_dev[1], "access": "rw"}]
        res["blockIO"] = {"throttleReadBpsDevice": [{"major": loop_dev[0], "minor": loop_dev[1], "rate": 10**12}]}
        b.config["mounts"] += [
            {"destination": "/lxcfs", "type": "bind", "source": str(mnt), "options": ["rbind", "rw"]},
            {"destination": "/proc/diskstats", "type": "bind", "source": f"{mnt}/proc/diskstats",
             "options": ["bind", "ro"]},
        ]
        b.write()
        ct = rt.run("ct", b)
        cg_rel = next(ln.split(":", 2)[2] for ln in Path(f"/proc/{ct.pid}/cgroup").read_text().splitlines()
                      if "blkio" in ln.split(":")[1].split(","))
        cg = Path("/sys/fs/cgroup/blkio") / cg_rel.lstrip("/")
        st = os.stat(b.rootfs)
        root_dev = (os.major(st.st_dev), os.minor(st.st_dev))

        # Before any I/O: the cgroup has counted nothing on the loop device ...
        assert sum(_throttle(cg, loop_dev).values()) == 0
        ds = ct.read("/proc/diskstats")
        rows = _rows(ds)
        # ... yet the container's diskstats lists it, and its root disk as sda, all zeros where the cgroup
        # has nothing (the host's own counters for these disks are not zero: never copied).
        assert set(rows) == {name, "sda"}, ds
        assert rows[name][:2] == loop_dev and not any(rows[name][2]), ds
        assert rows["sda"][:2] == root_dev or Path(f"/sys/dev/block/{root_dev[0]}:{root_dev[1]}/partition").exists()
        assert len(rows[name][2]) == len(Path("/proc/diskstats").read_text().splitlines()[0].split()) - 3
        parts = {ln.split()[3]: ln.split() for ln in ct.read("/lxcfs/proc/partitions").splitlines()[2:]}
        assert set(parts) == {name, "sda"}
        assert (int(parts[name][0]), int(parts[name][1]), int(parts[name][2])) == (*loop_dev, IMG_BYTES // 1024)
        # procps vmstat -d, in the container, sees the idle disk (and only the disks /sys/block names, so not sda).
        # (sysstat 12's iostat reads /sys/block/<dev>/stat instead, which no lxcfs virtualizes: host figures.)
        vm = ct.exec("/usr/bin/vmstat", "-d", check=True).stdout
        line = next((ln.split() for ln in vm.splitlines() if ln.split()[:1] == [name]), None)
        assert line is not None, vm
        assert [int(x) for x in line[1:]] == [0] * 10, vm

        # After direct reads the same row carries the cgroup's counters.
        ct.exec("dd", f"if=/dev/{name}", "of=/dev/null", "bs=4096", f"count={READS}", "iflag=direct", check=True)
        reads = _throttle(cg, loop_dev).get("Read", 0)
        assert reads >= READS
        after = _rows(ct.read("/proc/diskstats"))
        assert after[name][2][0] == reads and after[name][2][2] >= READS * 8
    finally:
        rt.cleanup()
        daemon.stop()
        C.remove_cgroup_parent(cgp)
