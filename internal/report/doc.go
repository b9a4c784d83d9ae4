// Package report turns the agent's results into forms a SIEM and an auditor
// can use: the event types (Detection, ScanSummary, UpdateEvent, Alert) with
// stable snake_case JSON, a Reporter that writes each event as one structured
// log line and fans it out to Sinks, an RFC 5424 syslog client (UDP, TCP and
// TLS with RFC 5425 octet counting) that never blocks the caller, the SQLite
// scan history in state_dir, and the avfleet_agent_scan_* Prometheus metrics.
//
// Syslog messages carry their fields as STRUCTURED-DATA under the SD-ID
// "avfleet@32473". 32473 is the private enterprise number IANA reserves for
// documentation (RFC 5612); avfleet has no PEN of its own, and an
// "name@number" SD-ID is the only form RFC 5424 allows for non-IANA
// parameters. SIEM parsers should match the SD-ID literally. A second element,
// RFC 5424's registered "meta" with sequenceId, lets a receiver see gaps when
// UDP or a full queue lost messages.
//
// The package imports nothing else of avfleet, so the agent, the mirror and the
// CLI can all use it.
package report
