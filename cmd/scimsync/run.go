package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/daemon"
)

// cmdRun is the daemon. SIGINT/SIGTERM arrive as ctx; SIGHUP reloads the config.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := newFlags("run", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, needLDAP, needTarget, needDaemon)
	if err != nil {
		return err
	}
	// the daemon has no plan to print: its logs go to stdout, where journald reads them
	log, level, err := newLeveledLogger(cfg.Log, stdout)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	load := func() (*daemon.Settings, error) {
		next, err := loadConfig(*path, needLDAP, needTarget, needDaemon)
		if err != nil {
			return nil, err
		}
		return next.settings(), nil
	}
	d, err := daemon.New(cfg.settings(), load, log, level)
	if err != nil {
		return err
	}
	if err := d.Start(); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading configuration")
			_ = d.Reload() // a rejected reload is logged with its errors; the old config keeps running
		case <-ctx.Done():
			log.Info("stopping")
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Admin.ShutdownTimeout.D())
			defer cancel()
			if err := d.Stop(sctx); err != nil {
				log.Error("unclean stop", zap.Error(err))
				return err
			}
			log.Info("stopped")
			return nil
		}
	}
}

// adminClient talks to a running daemon's admin listener, for commands that cannot open the
// state file while the daemon holds its lock.
type adminClient struct {
	base  string
	token config.Secret
}

func newAdminClient(cfg *fileConfig) (*adminClient, error) {
	tok, err := config.ResolveSecret(cfg.Admin.Token, cfg.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	return &adminClient{base: "http://" + cfg.Admin.Listen, token: tok}, nil
}

func (a *adminClient) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if !a.token.IsZero() {
		req.Header.Set("Authorization", "Bearer "+a.token.Reveal())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the state file is locked and the daemon's admin listener %s does not answer: %w", a.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("daemon: %s %s: HTTP %d: %s", method, path, resp.StatusCode, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
