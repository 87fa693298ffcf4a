"""Shared test harness (not part of the product): real containers, real daemons, real cgroups.

Modules: ``containers`` (busybox rootfs, runc/crun bundles and containers with a private ``--root``, a helper that
starts and stops OUR daemon or the C lxcfs on a tmp mount point, mountinfo helpers) and ``cgv1`` (cgroup v1 trees).
Nothing here is imported by src/; tests import it as ``support.containers`` (pytest puts tests/ on sys.path).
"""
