package config

import (
	"errors"
	"io"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkLogLine measures what redaction adds to one log line with the fields the SCIM
// client logs (strings, an int, a duration, an error), against the same core unwrapped.
func BenchmarkLogLine(b *testing.B) {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	r := NewRedactor("target-token-0123456789", "ldap-password", "server-token-a", "server-token-b", "admin-token")
	err := errors.New("scim: PATCH /Users/2819c223: HTTP 503: service unavailable")
	for _, tt := range []struct {
		name string
		core zapcore.Core
	}{{"plain", core}, {"redacting", RedactCore(core, r)}} {
		log := zap.New(tt.core).Named("scim-client")
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				log.Warn("retrying", zap.String("request", "PATCH /Users/2819c223-7f76-453a-919d-413861904646"),
					zap.Int("status", 503), zap.Duration("wait", 1500), zap.Int("attempt", 2), zap.Error(err))
			}
		})
	}
}
