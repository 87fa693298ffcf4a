"""Hypothesis properties of the stat math (views/stat.py raw_rows + advance + render_stat): every row sums
to the aggregate, nothing is negative, and no counter ever goes backwards across any sequence of reads,
whatever the host rows, cgroup usage, cpuset changes and usage resets do."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pylxcfs.cgroups.cpu import CpuUsage
from pylxcfs.parse.stat import NCOLS, ProcStat, parse_stat
from pylxcfs.views.stat import RESET_TICKS, USER_HZ, StatNode, advance, raw_rows, render_stat

NCPU = 4
NS_PER_TICK = 1_000_000_000 // USER_HZ
tick = st.integers(0, 10**9)
host_row = st.tuples(*([tick] * NCOLS))
cpusets = st.lists(st.integers(0, NCPU - 1), min_size=1, max_size=NCPU, unique=True).map(sorted)


@st.composite
def reads(draw: st.DrawFn) -> tuple[ProcStat, list[int], int, CpuUsage | None]:
    rows = {c: draw(host_row) for c in range(NCPU)}
    text = "".join(f"cpu{c} " + " ".join(map(str, r)) + "\n" for c, r in rows.items()) + "intr 1\nbtime 10\n"
    host = parse_stat(text)
    assert host.per_cpu == rows
    visible = draw(cpusets)
    shown = draw(st.integers(1, len(visible)))
    kind = draw(st.sampled_from(["v1", "v2", "none"]))
    usage: CpuUsage | None
    if kind == "none":
        usage = None
    elif kind == "v2":
        usage = CpuUsage(draw(st.integers(0, 10**15)), draw(st.integers(0, 10**15)), None)
    else:
        per = {c: (draw(st.integers(0, 10**14)), draw(st.integers(0, 10**14))) for c in range(NCPU)}
        usage = CpuUsage(sum(u for u, _ in per.values()), sum(s for _, s in per.values()), per)
    return host, visible, shown, usage


def check_render(rows: list[list[int]], host: ProcStat) -> None:
    text = render_stat(rows, host, 99)
    parsed = parse_stat(text)  # our own output must parse back
    assert parsed.total is not None
    assert list(parsed.per_cpu) == list(range(len(rows)))
    assert [sum(col) for col in zip(*parsed.per_cpu.values(), strict=True)] == list(parsed.total)
    assert parsed.btime == 99 and parsed.other == ("intr 1", "btime 99")


@settings(max_examples=200, deadline=None)
@given(st.lists(reads(), min_size=1, max_size=8))
def test_sum_nonnegative_monotone(seq: list[tuple[ProcStat, list[int], int, CpuUsage | None]]) -> None:
    node: StatNode | None = None
    prev_rows: list[list[int]] | None = None
    prev_total: list[int] | None = None
    for i, (host, visible, m, usage) in enumerate(seq):
        shown = visible[:m]
        raw = raw_rows(host, shown, visible, usage)
        assert len(raw) == m and all(len(r) == NCOLS and min(r) >= 0 for r in raw)
        node = advance(node, tuple(shown), raw, float(i))
        rows = [list(r) for r in node.out]
        assert len(rows) == m
        assert all(min(r) >= 0 for r in rows)
        total = [sum(col) for col in zip(*rows, strict=True)]
        if prev_rows is not None and prev_total is not None:
            assert all(t >= p for t, p in zip(total, prev_total, strict=True))
            for r, p in zip(rows, prev_rows, strict=False):  # surviving rows never decrease
                assert all(a >= b for a, b in zip(r, p, strict=True))
        check_render(rows, host)
        prev_rows, prev_total = rows, total


@given(st.integers(0, 10**12), st.integers(1, 64))
def test_even_split_exact_and_monotone(total_ns: int, m: int) -> None:
    host = parse_stat("".join(f"cpu{c} 0 0 0 0\n" for c in range(m)))
    cpus = list(range(m))
    a = raw_rows(host, cpus, cpus, CpuUsage(total_ns, 0, None))
    b = raw_rows(host, cpus, cpus, CpuUsage(total_ns + NS_PER_TICK, 0, None))  # one more tick
    assert sum(r[0] for r in a) == total_ns * USER_HZ // 1_000_000_000
    assert all(y[0] >= x[0] for x, y in zip(a, b, strict=True))
    assert max(r[0] for r in a) - min(r[0] for r in a) <= 1


def _row(idle: int) -> list[tuple[int, ...]]:
    return [(5, 0, 7, idle, *([0] * (NCOLS - 4)))]


def test_a_small_dip_is_held_and_not_counted_again() -> None:
    # idle 1000 -> 990 (the formula's tick-sampling jitter) -> 1010: shown 1000, 1000, 1010. Adding the
    # recovery on top of the held value (1020) would drift away from the formula with every dip.
    node = advance(None, (0,), _row(1000), 0.0)
    seen = []
    for idle in (990, 1010, 1010, 2000):
        node = advance(node, (0,), _row(idle), 1.0)
        seen.append(node.out[0][3])
    assert seen == [1000, 1010, 1010, 2000]


def test_a_reset_goes_on_from_what_was_shown() -> None:
    node = advance(None, (0,), _row(50_000), 0.0)
    node = advance(node, (0,), _row(10), 1.0)  # the cgroup recreated: far more than RESET_TICKS lower
    assert node.out[0][3] == 50_000
    node = advance(node, (0,), _row(110), 2.0)
    assert node.out[0][3] == 50_100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, RESET_TICKS)), min_size=2, max_size=40),
       st.data())
def test_two_workers_reading_one_container_agree(steps: list[tuple[int, int]], data: st.DataObject) -> None:
    """Two pool workers keep a node each for one container and each sees only some of its reads (the kernel
    gives each READ to one of them): after a read both took, both show exactly raw if it is a new high, and
    otherwise differ by at most one dip. The old clamped-delta rule (shown += max(0, raw - previous raw)) counted
    every recovery from a dip again, so the two drifted apart with every dip one of them saw."""
    true, raws = 10_000, []
    for grow, dip in steps:
        true += grow
        raws.append(true - dip)  # the formula's value: the true one minus a bounded dip
    nodes: list[StatNode | None] = [None, None]
    high = 0
    for i, r in enumerate(raws):
        who = data.draw(st.sampled_from([0, 1, 2]))  # worker 0, worker 1, or both (separate opens)
        for w in (0, 1):
            if who in (w, 2) or i == 0:
                nodes[w] = advance(nodes[w], (0,), _row(r), float(i))
        high = max(high, r)
        if who == 2:  # both just read r: each shows max(r, the highest it saw), both within [r, high]
            a, b = (n.out[0][3] if n is not None else 0 for n in nodes)
            assert r <= a <= high and r <= b <= high
            if r == high:
                assert a == b == r
