"""Throughput of the two FUSE back-ends of pylxcfs, same run, same machine (issue 2 vs issue 4 choice).

Mounts `pylxcfs --fuse-backend raw` (supervisor + worker speaking the kernel protocol) and
`pylxcfs --fuse-backend mfusepy` (one libfuse3 process) side by side, plus the C lxcfs for scale,
all pinned to CPU 0 with the reader (taskset), and measures open -> read to EOF -> close of
proc/meminfo with bench/reader.c from the host (a host caller gets the host file: this isolates the
binding cost from rendering). Interleaved rounds in random order; medians. Prints a table and writes
bench/out/fuse_backends.json. A measurement, not a test: nothing here asserts a speed.

    .venv/bin/python -m bench.fuse_backends [--rounds 5] [--opens 3000] [--file proc/meminfo]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import OUT, REPO, build_reader


def mounted(mnt: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(mnt) for line in f)


def start(name: str, argv: list[str], mnt: Path) -> subprocess.Popen[bytes]:
    mnt.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen(["taskset", "-c", "0", *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not mounted(mnt):
        if p.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not mount")
        time.sleep(0.05)
    (mnt / "proc/meminfo").read_bytes()  # wait for the first worker to be ready
    return p


def run_reader(reader: Path, path: Path, opens: int) -> float:
    out = subprocess.run(["taskset", "-c", "0", str(reader), "-n", str(opens), "-p", "1", str(path)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"ops=([\d.]+).*errors=(\d+)", out)
    if not m or m.group(2) != "0":
        raise SystemExit(f"reader failed: {out}")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--opens", type=int, default=3000)
    ap.add_argument("--file", default="proc/meminfo")
    ap.add_argument("--no-lxcfs", action="store_true", help="skip the C lxcfs")
    args = ap.parse_args()
    reader = build_reader()
    tmp = Path(tempfile.mkdtemp(prefix="pylxcfs-fusebench-"))
    pyl = str(REPO / ".venv/bin/pylxcfs")
    configs = {
        "pylxcfs raw (supervised)": [pyl, "-f", "--pidfile", str(tmp / "raw.pid"), "--fuse-backend", "raw",
                                     str(tmp / "raw")],
        "pylxcfs mfusepy": [pyl, "-f", "--pidfile", str(tmp / "mf.pid"), "--fuse-backend", "mfusepy", str(tmp / "mf")],
    }
    mnts = {"pylxcfs raw (supervised)": tmp / "raw", "pylxcfs mfusepy": tmp / "mf"}
    if not args.no_lxcfs:
        configs["C lxcfs 5.0.3"] = ["lxcfs", "-f", "-p", str(tmp / "lx.pid"), str(tmp / "lx")]
        mnts["C lxcfs 5.0.3"] = tmp / "lx"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    results: dict[str, list[float]] = {k: [] for k in configs}
    try:
        for name, argv in configs.items():
            procs[name] = start(name, argv, mnts[name])
        for _ in range(args.rounds):
            order = list(configs)
            random.shuffle(order)
            for name in order:
                results[name].append(run_reader(reader, mnts[name] / args.file, args.opens))
    finally:
        for p in procs.values():
            p.terminate()
        for name, p in procs.items():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
            if mounted(mnts[name]):
                subprocess.run(["umount", "-l", str(mnts[name])], check=False)
        with contextlib.suppress(OSError):
            for m in mnts.values():
                m.rmdir()
    table = {k: {"median_ops_s": round(statistics.median(v)), "runs": [round(x) for x in v]}
             for k, v in results.items()}
    (OUT / "fuse_backends.json").write_text(json.dumps({"file": args.file, "opens": args.opens, "pinned": "cpu0",
                                                        "results": table}, indent=1))
    print(f"{args.file}, 1 reader, reader and daemons on CPU 0, {args.rounds} rounds x {args.opens} opens")
    for k, v in table.items():
        print(f"  {k:28s} {v['median_ops_s']:>8} opens/s  {v['runs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
