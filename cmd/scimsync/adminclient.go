package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/scimsync/scimsync/config"
)

// adminClient talks to a running daemon's admin listener, for commands that cannot open the
// state file while the daemon holds its lock.
type adminClient struct {
	base  string
	token config.Secret
	http  *http.Client
}

// adminTimeout bounds every admin call but POST /sync, which lasts as long as the run.
const adminTimeout = 30 * time.Second

func newAdminClient(cfg *fileConfig) (*adminClient, error) {
	tok, err := config.ResolveSecret(cfg.Admin.Token, cfg.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return &adminClient{base: "http://" + cfg.Admin.Listen, token: tok, http: &http.Client{}}, nil
}

// do sends one request and decodes the JSON answer into out. A status outside 2xx is an error
// unless it is one of accept (for answers that carry a report either way).
func (a *adminClient) do(ctx context.Context, timeout time.Duration, method, path string, body, out any, accept ...int) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if !a.token.IsZero() {
		req.Header.Set("Authorization", "Bearer "+a.token.Reveal())
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("the state file is locked and the daemon's admin listener %s does not answer: %w", a.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("daemon: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 && !slices.Contains(accept, resp.StatusCode) {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return fmt.Errorf("daemon: %s %s: HTTP %d: %s (admin.token or admin.token_file must match the daemon's)", method, path, resp.StatusCode, e.Error)
		}
		return fmt.Errorf("daemon: %s %s: HTTP %d: %s", method, path, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("daemon: %s %s: decode the answer: %w", method, path, err)
	}
	return nil
}
