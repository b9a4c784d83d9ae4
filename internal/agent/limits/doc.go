// Package limits keeps clamd and the agent's scan work inside the CPU and
// memory an operator allows (limits.cpu_percent, limits.memory_bytes). It
// creates a cgroup for them (v2: cpu.max and memory.max; v1: the cpu,
// cpuacct and memory hierarchies), moves processes into it, reads back CPU
// use and OOM kills for the agent's reports, and removes the cgroup on Close.
// Where cgroups cannot be written (not root, read-only /sys/fs/cgroup in a
// container) it falls back to nice 10 and the idle I/O class, and says so in
// a warning: that keeps scans polite but does not enforce the limits.
package limits
