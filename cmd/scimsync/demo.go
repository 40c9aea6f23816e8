package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

//go:embed sample-directory.ldif
var sampleDirectory []byte

// cmdDemo syncs the bundled sample directory into the built-in SCIM server on 127.0.0.1: a
// dry run first, then the real sync, then a second dry run that finds nothing to do. Nothing
// to install; everything lives in one directory that is kept for inspection.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("demo", stderr)
	dir := fs.String("dir", "", "where to keep the demo's files (default: a new temporary directory)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "scimsync-demo-")
		if err != nil {
			return err
		}
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	ldif := filepath.Join(*dir, "directory.ldif")
	if err := os.WriteFile(ldif, sampleDirectory, 0o600); err != nil {
		return err
	}
	token := randomToken()
	log := zap.NewNop()

	// the built-in SCIM server, as an identity provider or the sync would reach it
	serverState, err := state.Open(filepath.Join(*dir, "server.db"), state.Options{})
	if err != nil {
		return err
	}
	defer serverState.Close()
	scfg := scimserver.DefaultServerConfig()
	scfg.Listen = "127.0.0.1:0"
	scfg.Tokens = []scimserver.TokenConfig{{Name: "demo", Token: config.NewSecret(token)}}
	srv, err := scimserver.NewServer(scfg, serverState, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = srv.Stop(sctx)
	}()
	base := "http://" + srv.Addr() + "/scim/v2"

	cfg := defaults()
	cfg.LDAP.URL = "file://" + ldif
	cfg.LDAP.BaseDN = "ou=people,dc=example,dc=org"
	cfg.Target.URL = base
	cfg.Target.Token = config.NewSecret(token)
	cfg.Target.RequestsPerSecond = 0
	cfg.State.Path = filepath.Join(*dir, "sync.db")
	cfg.Sync.Overrides = []sync.OverrideRule{{UserName: "svc-*"}}

	fmt.Fprintf(stdout, "scimsync demo: directory %s → SCIM server %s\nfiles in %s\n\n", ldif, base, *dir)
	steps := []struct {
		title string
		dry   bool
	}{
		{"1. Dry run: what the sync would do (nothing is written)", true},
		{"2. The real sync", false},
		{"3. Dry run again: nothing left to do", true},
	}
	for _, s := range steps {
		fmt.Fprintf(stdout, "== %s\n", s.title)
		err := syncOnce(ctx, &cfg, syncFlags{dryRun: s.dry, output: "text"}, log, stdout, stderr)
		if err != nil && !errors.Is(err, errPending) {
			return err
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintln(stdout, "== 4. One user as the SCIM server returns it")
	return showUser(ctx, stdout, base, token)
}

func showUser(ctx context.Context, w io.Writer, base, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+`/Users?filter=userName%20eq%20%22zoe%22`, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var lr struct {
		Resources []json.RawMessage `json:"Resources"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		return err
	}
	if len(lr.Resources) == 0 {
		return errors.New("demo: the synced user is missing from the server")
	}
	var pretty map[string]any
	_ = json.Unmarshal(lr.Resources[0], &pretty)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(pretty)
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
