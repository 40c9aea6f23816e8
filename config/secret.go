package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Secret is a credential. It prints as <secret> through fmt, zap, JSON and YAML, so a config
// value logged or wrapped into an error never leaks; Reveal is the one way to read it.
type Secret struct{ value string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{value: s} }

// Reveal returns the plain value, for the one place that sends it (a bind, a header).
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether no secret was given.
func (s Secret) IsZero() bool { return s.value == "" }

func (s Secret) String() string                { return "<secret>" }
func (s Secret) GoString() string              { return "<secret>" }
func (s Secret) MarshalJSON() ([]byte, error)  { return []byte(`"<secret>"`), nil }
func (s Secret) MarshalYAML() (any, error)     { return "<secret>", nil }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte("<secret>")) }
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a secret must be a string", n.Line)
	}
	v, err := ExpandEnv(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	s.value = v
	return nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ExpandEnv replaces ${NAME} with the environment variable NAME. An unset variable is an
// error: an empty password silently sent would be worse than a refusal to start.
func ExpandEnv(s string) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		name := envRef.FindStringSubmatch(m)[1]
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// ResolveSecret picks the secret from its inline value or from file (at most one may be
// set). Trailing newlines in the file are dropped, as editors add them.
func ResolveSecret(inline Secret, file string) (Secret, error) {
	switch {
	case !inline.IsZero() && file != "":
		return Secret{}, fmt.Errorf("set either the value or the _file key, not both")
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return Secret{}, fmt.Errorf("read secret file: %w", err)
		}
		v := strings.TrimRight(string(data), "\r\n")
		if v == "" {
			return Secret{}, fmt.Errorf("secret file %s is empty", file)
		}
		return Secret{value: v}, nil
	}
	return inline, nil
}

// Duration is a time.Duration that YAML reads as "90s", "15m", "720h" or "30d".
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// ParseDuration extends time.ParseDuration with a "d" (24h) unit, because grace periods are
// naturally written in days; "0" means zero.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "" {
		return 0, nil
	}
	if strings.HasSuffix(s, "d") {
		var days int
		if _, err := fmt.Sscanf(s, "%dd", &days); err != nil || fmt.Sprintf("%dd", days) != s || days < 0 {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 30d, 12h, 90s)", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 30d, 12h, 90s)", s)
	}
	return d, nil
}
