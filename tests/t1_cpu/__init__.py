"""Tests of the CPU views (issue 2): parsers, cgroup getters, cpuinfo/stat/online views, a real v1 cgroup."""
