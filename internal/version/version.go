// Package version holds avfleet's version string, set at build time with
// -ldflags "-X github.com/avfleet/avfleet/internal/version.Version=v1.2.3".
package version

// Version is the release version; "dev" for builds from a work tree.
var Version = "dev"

// UserAgent is what avfleet sends in HTTP requests to upstream mirrors and to
// its own mirror, so operators can tell avfleet traffic apart in their logs.
func UserAgent() string { return "avfleet/" + Version }
