package config

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Effective returns the configuration as the mirror will use it, as YAML:
// every default filled in and every relative path resolved. It is what
// `avfleet mirror serve --check-config` prints, and loading it again gives
// the same configuration.
func (m *Mirror) Effective() ([]byte, error) { return effective(m.path, m) }

// Effective returns the configuration as the agent will use it, as YAML,
// node_name included; see Mirror.Effective.
func (a *Agent) Effective() ([]byte, error) { return effective(a.path, a) }

func effective(path string, v any) ([]byte, error) {
	var b bytes.Buffer
	if path == "" {
		path = "(defaults only)"
	}
	fmt.Fprintf(&b, "# effective configuration of %s: defaults filled in, relative paths resolved\n", path)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("print effective configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("print effective configuration: %w", err)
	}
	return b.Bytes(), nil
}
