// Package config loads mirror.yaml and agent.yaml: defaults first, then a
// strict decode (an unknown key is an error naming file:line), then Validate.
// Relative paths in a file are resolved against the file's directory, so a
// config and its certificates can move together.
package config
