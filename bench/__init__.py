"""Benchmarks of pylxcfs against the C lxcfs, measured in the same run (`make bench`)."""
