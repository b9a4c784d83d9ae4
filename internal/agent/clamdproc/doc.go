// Package clamdproc runs the distribution's clamd as a managed child of the
// agent: it writes clamd.conf into the agent's state directory, starts clamd
// in the foreground, waits until it answers PING, restarts it with
// exponential backoff and jitter when it dies (saying why: exit code, signal,
// probable or confirmed OOM kill), stops it on shutdown, and never leaves it
// behind when the agent dies. It also turns clamd's log into the one reliable
// confirmation of a database reload: clamd answers RELOAD at once and reports
// the outcome only in its log ("Database correctly reloaded (N signatures)"
// or "Database reload failed"), so Reload waits for those lines. The clamd
// protocol itself lives in package clamd; cgroup placement is a hook
// (Options.OnStart) filled by the limits code.
package clamdproc
