package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/daemon"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
)

const runLong = `The daemon: the scheduled sync (sync.schedule), the SCIM server when the file has a server
section, and the admin listener (admin.listen: /healthz, /readyz, /metrics, /status, /runs,
/history, POST /sync, overrides). Logs go to stdout for journald, with syslog priorities when
stdout is the journal. SIGHUP re-reads the config (a bad file is refused and the running one
stays); SIGTERM stops at the next safe point. Meant to run under systemd (Type=notify):
see the packaged unit, scimsync.service.`

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: scheduled sync, SCIM server, admin listener",
		Long:  runLong,
		Example: `  systemctl enable --now scimsync   # the packaged unit runs: scimsync run
  scimsync run -c ./config.yaml     # in the foreground
  systemctl reload scimsync         # SIGHUP: re-read the config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.run(cmd.Context()) },
	}
}

// run is the daemon. SIGINT/SIGTERM arrive as ctx; SIGHUP reloads the config.
func (a *app) run(ctx context.Context) error {
	cfg, err := a.load(needLDAP, needTarget, needDaemon)
	if err != nil {
		return err
	}
	// the daemon has no plan to print: its logs go to stdout, where journald reads them
	log, level, err := a.logger(cfg, a.stdout, "")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	d, err := daemon.New(cfg.settings(), a.reloader(cfg.Log.redact), log, level, a.build.daemon())
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

// reloader is the daemon's Loader (SIGHUP). The process keeps one Redactor, red, the one its
// logger was built with: each file read on reload adds its secrets to it and runs on it, so a
// secret that is new in the file is redacted from the logs too, not only from what a fresh
// Redactor the logger never sees would cover.
func (a *app) reloader(red *config.Redactor) daemon.Loader {
	return func() (*daemon.Settings, error) {
		next, err := a.load(needLDAP, needTarget, needDaemon)
		if err != nil {
			return nil, err
		}
		_ = red.AddConfig(next) // an unreadable secret file is reported by the component that reads it
		next.Log.redact = red
		return next.settings(), nil
	}
}

// shutdownTimeout bounds how long serve drains requests on SIGTERM.
const shutdownTimeout = 15 * time.Second

func (a *app) serveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run only the SCIM 2.0 server identity providers (Okta, Entra ID) provision into",
		Long: `Serve SCIM 2.0 at /scim/v2 (section server:), storing users and groups in the state file.
'scimsync run' serves it too when the file has a server section; use serve for a server-only
install.`,
		Example: `  scimsync serve -c /etc/scimsync/config.yaml`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return a.serve(cmd.Context()) },
	}
}

func (a *app) serve(ctx context.Context) error {
	defer profile(ctx)()
	cfg, err := a.load(needServer)
	if err != nil {
		return err
	}
	log, _, err := a.logger(cfg, a.stderr, "server.")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	st, err := state.Open(cfg.State.Path, state.Options{LockTimeout: cfg.State.LockTimeout.D()})
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := scimserver.NewServer(cfg.Server, st, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return srv.Stop(sctx)
}
