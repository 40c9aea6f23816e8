package sync

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/scimsync/scimsync/scimclient"
)

// TestRefusedWrite: which failed writes mean the target's capabilities may have changed.
func TestRefusedWrite(t *testing.T) {
	typed := func(status int, scimType string) error {
		return fmt.Errorf("sync: update user %q: %w", "alice", &scimclient.APIError{Method: "PATCH", Path: "/Users/1", Status: status, ScimType: scimType})
	}
	api := func(status int) error { return typed(status, "") }
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{api(400), true}, {api(501), true}, {api(405), true},
		{typed(400, "invalidSyntax"), true}, {typed(400, "invalidPath"), true}, {typed(400, "noTarget"), true}, {typed(400, "mutability"), true},
		{typed(400, "invalidValue"), false}, {typed(400, "uniqueness"), false}, {typed(400, "tooMany"), false},
		{api(403), false}, {api(413), false}, {api(422), false},
		{api(404), false}, {api(409), false}, {api(412), false}, {api(428), false}, {api(401), false}, {api(429), false},
		{api(500), false}, {api(503), false}, {api(302), false},
		{fmt.Errorf("create: %w: %w", scimclient.ErrOutcomeUnknown, &scimclient.APIError{Status: 502}), false},
		{errors.Join(scimclient.ErrCircuitOpen, &scimclient.APIError{Status: 400}), true},
		{context.DeadlineExceeded, false}, {scimclient.ErrWrongResource, false},
	} {
		if got := refusedWrite(tt.err); got != tt.want {
			t.Errorf("refusedWrite(%v) = %v", tt.err, got)
		}
	}
}
