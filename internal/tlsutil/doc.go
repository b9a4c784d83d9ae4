// Package tlsutil is the fleet's small certificate authority and its TLS
// settings: it writes a CA, the mirror's server certificate and one client
// certificate per node (CN = node name), and builds the *tls.Config of both
// ends of the mutual-TLS link. The server side re-reads its certificate and
// the client CA on Reload (the mirror calls it on SIGHUP), so certificates
// can be renewed without dropping the listener. It imports nothing of the
// project.
package tlsutil
