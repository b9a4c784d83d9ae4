// Package docs holds no code: its tests keep docs/ true to the program. They
// fail when an operator-visible message (an error the commands and daemons
// return, a warning or error they log) or a verification check name is added
// without an entry in docs/troubleshooting.md, unless the message is listed
// in undocumented.txt with the reason it needs none. Configuration keys are
// checked by internal/config's TestDocumentation against docs/configuration.md.
package docs
