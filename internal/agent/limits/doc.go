// Package limits keeps clamd and the agent's scan work inside the CPU and
// memory an operator allows (limits.cpu_percent, limits.memory_bytes). It
// creates a cgroup for them (v2: cpu.max and memory.max; v1: the cpu,
// cpuacct and memory hierarchies), moves processes into it, reads back CPU
// use and OOM kills for the agent's reports, and removes the cgroup on Close.
// Where cgroups cannot be written (not root, read-only /sys/fs/cgroup in a
// container) it falls back to nice 10 and the idle I/O class, and says so in
// a warning; there a Pacer keeps scheduled scans to the CPU limit by
// measuring the CPU time of clamd and the agent and holding back the files
// handed to clamd. Memory is not limited without a cgroup.
//
// On cgroup v2 the group goes into the agent's own cgroup when that is the
// agent's to manage (systemd's Delegate=: the agent alone in it, cpu and
// memory available, cgroup.subtree_control writable): the agent moves into
// <own>/agent, since a cgroup that hands controllers to its children may
// hold no process itself, and clamd's group is <own>/clamd. Otherwise it is
// avfleet/<name> at the root, where nothing else manages the tree (a
// container's cgroup namespace, a host without systemd). cgroup v1 always
// uses the root of each hierarchy.
package limits
