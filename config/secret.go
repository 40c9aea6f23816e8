package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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

// UnmarshalYAML reads a string and expands ${ENV} in it. Its problems are type errors, so the
// decoder goes on and reports the rest of the file too.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return lineError(n, "a secret must be a string")
	}
	v, err := ExpandEnv(n.Value)
	if err != nil {
		return lineError(n, "%v", err)
	}
	s.value = v
	return nil
}

// lineError is a problem at n that does not stop the decoder (which collects type errors).
func lineError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${NAME} with the environment variable NAME, and ${NAME:-default} with it
// or, when it is unset or empty, with default. An unset variable without a default is an
// error: an empty password silently sent would be worse than a refusal to start.
//
// The default form lets one file serve the service and an administrator's shell:
// "${CREDENTIALS_DIRECTORY:-/etc/scimsync}/ldap.secret" is systemd's credential copy inside the
// unit (LoadCredential=) and the root-only original outside it.
func ExpandEnv(s string) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := envRef.FindStringSubmatch(m)
		v, ok := os.LookupEnv(sub[1])
		if sub[2] != "" {
			if v == "" {
				return sub[3]
			}
			return v
		}
		if !ok {
			missing = append(missing, sub[1])
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// ResolveSecret picks the secret from its inline value or from file (at most one may be
// set). ${ENV} in the file's path is expanded (see ExpandEnv). Trailing newlines in the file
// are dropped, as editors add them.
func ResolveSecret(inline Secret, file string) (Secret, error) {
	switch {
	case !inline.IsZero() && file != "":
		return Secret{}, fmt.Errorf("set either the value or the _file key, not both")
	case file != "":
		file, err := ExpandEnv(file)
		if err != nil {
			return Secret{}, fmt.Errorf("secret file path: %w", err)
		}
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

// MarshalYAML writes the duration as Go prints it ("720h0m0s").
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads "90s", "15m", "30d" or "0"; a bad value is a type error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return lineError(n, "want a duration such as 30d, 12h or 90s")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return lineError(n, "%v", err)
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
