"""Real cgroups and processes of this machine, read without FUSE (root): the views, the resolver and the fd cache
against what the kernel gives for cgroups these tests create."""
