// Package schedule decides when scheduled scans start and runs them one at a
// time. A Schedule is either an interval (hourly or daily) whose start falls at
// a point of the earliest–latest window that is fixed per node (derived from a
// hash of the node name, so a fleet does not start together yet each node
// starts at the same time every day), or a 5-field cron expression. A Runner
// drives a job from a Schedule: it never starts a run while one (scheduled or
// on demand) is still going, and it persists the start time of the last
// completed scheduled run so that a run missed while the agent was down is
// made up as soon as the schedule allows it (inside the window; at once for
// cron).
package schedule
