package config

import _ "embed"

// Example is the documented example configuration: every key with its default and a comment.
// The package installs it as /etc/scimsync/config.yaml; `scimsync config example` prints it.
//
//go:embed example.yaml
var Example []byte
