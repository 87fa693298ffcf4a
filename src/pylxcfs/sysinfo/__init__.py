"""sysinfo(2) per container through seccomp user notification (docs/sysinfo.md).

abi.py: which notifications we can answer (architecture, syscall number) and the struct sysinfo bytes (pure).
values.py: a container's figures from the same readers and views as its /proc files.
agent.py: the long-lived process that receives listener fds on the OCI `listenerPath` socket and answers.
keeper.py: the fd keeper that holds copies of them and replaces a dead agent.
client.py: ping / reload / start the agent (daemon CLI, toolkit, lxcfs-runc).
seccomp_merge.py: add the notify rule to an OCI config's seccomp profile without weakening it (pure).
"""
