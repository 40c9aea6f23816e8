// Package daemon is `scimsync run`: one process hosting the scheduled sync, the SCIM server
// (when configured) and the admin listener, with systemd notification, config reload and a
// clean stop. cmd/scimsync turns signals into calls on it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	gosync "sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/ldap"
	"github.com/scimsync/scimsync/scimclient"
	"github.com/scimsync/scimsync/scimserver"
	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

// AdminConfig is the `admin:` section.
type AdminConfig struct {
	Listen          string          `yaml:"listen"`
	Token           config.Secret   `yaml:"token"` // required for POST /sync, overrides and log level changes
	TokenFile       string          `yaml:"token_file"`
	ShutdownTimeout config.Duration `yaml:"shutdown_timeout"`
}

// DefaultAdminConfig is the section's defaults: loopback only.
func DefaultAdminConfig() AdminConfig {
	return AdminConfig{Listen: "127.0.0.1:9464", ShutdownTimeout: config.Duration(30 * time.Second)}
}

// Validate reports every problem in the section.
func (c AdminConfig) Validate() config.Problems {
	var ps config.Problems
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		ps.Add("listen", "want host:port, got %q", c.Listen)
	}
	if !c.Token.IsZero() && c.TokenFile != "" {
		ps.Add("token_file", "set token or token_file, not both")
	}
	if c.ShutdownTimeout.D() <= 0 {
		ps.Add("shutdown_timeout", "must be positive")
	}
	return ps
}

// Settings is everything the daemon reads from the config file.
type Settings struct {
	LDAP    ldap.Config
	Target  scimclient.TargetConfig
	Mapping sync.MappingConfig
	Sync    sync.Config
	Server  *scimserver.ServerConfig // nil: no SCIM server in this process
	Admin   AdminConfig
	State   state.Config
	Level   string // log level
}

// Loader re-reads and fully validates the config file (on SIGHUP).
type Loader func() (*Settings, error)

// ValidateSchedule checks the schedule the way the daemon will parse it. robfig/cron panics on
// some malformed specs ("TZ=UTC"), so parsing is guarded.
func ValidateSchedule(spec, tz string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid schedule %q", spec)
		}
	}()
	if tz != "" {
		if _, err := time.LoadLocation(tz); err != nil {
			return fmt.Errorf("timezone %q: %w", tz, err)
		}
	}
	if _, err := cron.ParseStandard(spec); err != nil {
		return fmt.Errorf("schedule %q: %w", spec, err)
	}
	return nil
}

// ErrBusy means a sync is already running.
var ErrBusy = errors.New("a sync is already running")

// Daemon is one `scimsync run` process.
type Daemon struct {
	load  Loader
	log   *zap.Logger
	level zap.AtomicLevel
	reg   *prometheus.Registry
	m     *metrics

	mu       gosync.Mutex // guards cur, cron fields, last*
	cur      *Settings
	cron     *cron.Cron
	entry    cron.EntryID
	lastRun  *state.Run
	lastErr  string
	ldapOK   *bool
	targetOK *bool

	syncing  gosync.Mutex // held while a sync runs: never two at once
	running  atomic.Bool
	store    *state.Store
	scimSrv  *scimserver.Server
	admin    *http.Server
	adminLn  net.Listener
	adminTok config.Secret

	// runSync performs one run; it is runOnce except in tests that need a sync to panic.
	runSync func(ctx context.Context, dry bool) (*sync.Plan, *sync.Result, error)

	ctx    context.Context // cancelled by Stop: running syncs stop at a safe point
	cancel context.CancelFunc
	jobs   gosync.WaitGroup
	stopWD chan struct{}
}

// New builds a daemon from validated settings. Nothing is opened until Start.
func New(s *Settings, load Loader, log *zap.Logger, level zap.AtomicLevel) (*Daemon, error) {
	if err := ValidateSchedule(s.Sync.Schedule, s.Sync.Timezone); err != nil {
		return nil, fmt.Errorf("daemon: sync.%w", err)
	}
	tok, err := config.ResolveSecret(s.Admin.Token, s.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("daemon: admin token: %w", err)
	}
	reg := prometheus.NewRegistry()
	d := &Daemon{load: load, log: log, level: level, reg: reg, m: newMetrics(reg), cur: s, adminTok: tok}
	d.runSync = d.runOnce
	return d, nil
}

// Start opens the state file, starts the listeners and the scheduler, and tells systemd it is
// ready only when all of that is up.
func (d *Daemon) Start() error {
	d.ctx, d.cancel = context.WithCancel(context.Background())
	s := d.settings()
	st, err := state.Open(s.State.Path, state.Options{LockTimeout: s.State.LockTimeout.D()})
	if err != nil {
		return err
	}
	d.store = st
	if s.Server != nil {
		if d.scimSrv, err = scimserver.NewServer(*s.Server, st, d.log); err != nil {
			_ = st.Close()
			return err
		}
		if err := d.scimSrv.RegisterMetrics(d.reg); err != nil {
			_ = st.Close()
			return err
		}
		d.scimSrv.Wrap(d.m.countServer)
		if err := d.scimSrv.Start(); err != nil {
			_ = st.Close()
			return err
		}
	}
	if d.adminLn, err = net.Listen("tcp", s.Admin.Listen); err != nil {
		d.stopServers(context.Background())
		return fmt.Errorf("daemon: admin listen %s: %w", s.Admin.Listen, err)
	}
	d.admin = &http.Server{Handler: d.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.admin.Serve(d.adminLn) }()
	if err := d.schedule(s); err != nil {
		d.stopServers(context.Background())
		return err
	}
	if runs, err := st.Runs(1); err == nil && len(runs) > 0 {
		d.lastRun = &runs[0]
	}
	d.startWatchdog()
	d.notify(sddaemon.SdNotifyReady + "\nSTATUS=" + d.statusLine())
	d.log.Info("scimsync running", zap.String("admin", d.AdminAddr()), zap.String("schedule", s.Sync.Schedule),
		zap.Time("next_run", d.NextRun()))
	if s.Sync.RunOnStart {
		d.jobs.Add(1)
		go func() { defer d.jobs.Done(); d.scheduledRun() }()
	}
	return nil
}

func (d *Daemon) settings() *Settings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

// cronLogger sends robfig/cron's chatty info to debug and its errors to error.
type cronLogger struct{ l *zap.SugaredLogger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debugw("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Errorw("cron: "+msg, append(kv, "error", err)...)
}

// schedule (re)creates the scheduler for s. Recovery and overlap handling are ours (scheduledRun)
// so that panics and skipped ticks are counted and logged with context.
func (d *Daemon) schedule(s *Settings) error {
	loc := time.Local
	if s.Sync.Timezone != "" {
		var err error
		if loc, err = time.LoadLocation(s.Sync.Timezone); err != nil {
			return fmt.Errorf("daemon: sync.timezone: %w", err)
		}
	}
	c := cron.New(cron.WithLocation(loc), cron.WithLogger(cronLogger{d.log.Sugar()}),
		cron.WithChain(cron.Recover(cronLogger{d.log.Sugar()})))
	id, err := c.AddFunc(s.Sync.Schedule, func() {
		d.jobs.Add(1)
		defer d.jobs.Done()
		d.scheduledRun()
	})
	if err != nil {
		return fmt.Errorf("daemon: sync.schedule: %w", err)
	}
	d.mu.Lock()
	old := d.cron
	d.cron, d.entry = c, id
	d.mu.Unlock()
	if old != nil {
		old.Stop() // running jobs finish; they hold d.syncing, so no overlap with the new schedule
	}
	c.Start()
	return nil
}

// NextRun is when the scheduler will next start a sync.
func (d *Daemon) NextRun() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cron == nil {
		return time.Time{}
	}
	return d.cron.Entry(d.entry).Next
}

func (d *Daemon) scheduledRun() {
	if j := d.settings().Sync.Jitter.D(); j > 0 {
		select {
		case <-time.After(rand.N(j)):
		case <-d.ctx.Done():
			return
		}
	}
	_, _, err := d.SyncNow(d.ctx, false)
	if errors.Is(err, ErrBusy) {
		d.m.skipped.Inc()
		d.log.Info("scheduled sync skipped: the previous one is still running")
	}
}

// SyncNow runs one sync (or, with dry, plans one) unless one is running. A panic inside the
// run is recovered, logged and counted; the daemon keeps going.
func (d *Daemon) SyncNow(ctx context.Context, dry bool) (plan *sync.Plan, res *sync.Result, err error) {
	if !d.syncing.TryLock() {
		return nil, nil, ErrBusy
	}
	defer d.syncing.Unlock()
	d.running.Store(true)
	defer d.running.Store(false)
	defer func() {
		if r := recover(); r != nil {
			d.m.panics.Inc()
			err = fmt.Errorf("daemon: sync panicked: %v", r)
			d.log.Error("sync panicked", zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	started := time.Now()
	plan, res, err = d.runSync(ctx, dry)
	if !dry {
		d.recordOutcome(started, plan, res, err)
	}
	return plan, res, err
}

func (d *Daemon) runOnce(ctx context.Context, dry bool) (*sync.Plan, *sync.Result, error) {
	s := d.settings()
	eng, tgt, err := sync.Open(sync.Sections{LDAP: s.LDAP, Target: s.Target, Mapping: s.Mapping, Sync: s.Sync}, d.store, d.log,
		func(src ldap.Source) ldap.Source { return countingSource{src, d.m} })
	if err != nil {
		return nil, nil, err
	}
	tgt.Observe(d.m.observeSCIM)
	started := time.Now()
	plan, err := eng.Plan(ctx, sync.PlanOptions{})
	d.contact(err)
	if err != nil {
		if !dry {
			if rerr := eng.RecordFailure(started, err); rerr != nil {
				d.log.Error("could not record the failed run", zap.Error(rerr))
			}
		}
		return nil, nil, err
	}
	if dry {
		return plan, nil, nil
	}
	res, err := eng.Apply(ctx, plan, nil)
	d.m.retries.Add(float64(tgt.Stats().Retries))
	return plan, res, err
}

// contact records whether the directory and the target answered, for /readyz. A read that
// failed or came back empty stopped the run before the target was contacted.
func (d *Daemon) contact(err error) {
	t, f := true, false
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err == nil:
		d.ldapOK, d.targetOK = &t, &t
	case errors.Is(err, sync.ErrSourceFailed):
		d.ldapOK = &f
	case errors.Is(err, sync.ErrEmptySource):
		d.ldapOK = &t
	default:
		d.ldapOK, d.targetOK = &t, &f
	}
}

func (d *Daemon) recordOutcome(started time.Time, plan *sync.Plan, res *sync.Result, err error) {
	result := "ok"
	switch {
	case errors.Is(err, sync.ErrSafetyLimit), errors.Is(err, sync.ErrEmptySource):
		result = "stopped"
	case errors.Is(err, context.Canceled):
		result = "cancelled"
	case err != nil:
		result = "error"
	}
	d.m.runs.WithLabelValues(result).Inc()
	d.m.duration.Observe(time.Since(started).Seconds())
	if plan != nil {
		d.m.unchanged.Add(float64(plan.Unchanged))
	}
	if res != nil {
		for a, n := range res.Done {
			d.m.users.WithLabelValues(string(a)).Add(float64(n))
		}
	}
	if result == "ok" {
		d.m.lastSuccess.SetToCurrentTime()
	}
	runs, _ := d.store.Runs(1)
	d.mu.Lock()
	if len(runs) > 0 {
		d.lastRun = &runs[0]
	}
	d.lastErr = ""
	if err != nil {
		d.lastErr = err.Error()
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Error("sync finished with an error", zap.String("result", result), zap.Error(err))
	} else {
		d.log.Info("sync finished", zap.String("summary", sync.ResultLine(res)))
	}
	d.notify("STATUS=" + d.statusLine())
}

func (d *Daemon) statusLine() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastRun == nil {
		return "running; no sync yet"
	}
	r := d.lastRun
	return fmt.Sprintf("last sync %s at %s: %d created, %d updated, %d disabled, %d deleted",
		r.Result, r.Started.Local().Format(time.DateTime), r.Counts["create"], r.Counts["update"], r.Counts["disable"], r.Counts["delete"])
}

// Reload re-reads the config; only a fully valid one is swapped in. Listener addresses and the
// state path need a restart and are reported as such.
func (d *Daemon) Reload() error {
	d.notify("RELOADING=1\nMONOTONIC_USEC=" + fmt.Sprint(time.Now().UnixMicro()))
	defer d.notify(sddaemon.SdNotifyReady)
	next, err := d.load()
	if err == nil {
		err = ValidateSchedule(next.Sync.Schedule, next.Sync.Timezone)
	}
	if err != nil {
		d.m.reloads.WithLabelValues("rejected").Inc()
		d.log.Error("reload rejected; the running configuration stays", zap.Error(err))
		return err
	}
	tok, err := config.ResolveSecret(next.Admin.Token, next.Admin.TokenFile)
	if err != nil {
		d.m.reloads.WithLabelValues("rejected").Inc()
		d.log.Error("reload rejected; the running configuration stays", zap.Error(err))
		return err
	}
	cur := d.settings()
	if next.State.Path != cur.State.Path || next.Admin.Listen != cur.Admin.Listen || !reflect.DeepEqual(next.Server, cur.Server) {
		d.log.Warn("state.path, admin.listen and the server section (listener, tokens, TLS) take effect only after a restart")
	}
	if lvl, err := zap.ParseAtomicLevel(next.Level); err == nil {
		d.level.SetLevel(lvl.Level())
	}
	d.mu.Lock()
	d.cur, d.adminTok = next, tok
	d.mu.Unlock()
	if err := d.schedule(next); err != nil {
		return err
	}
	d.m.reloads.WithLabelValues("applied").Inc()
	d.log.Info("configuration reloaded", zap.String("schedule", next.Sync.Schedule), zap.Time("next_run", d.NextRun()))
	return nil
}

// Stop stops scheduling, lets a running sync stop at a safe point, drains the listeners and
// closes the state file, all within ctx.
func (d *Daemon) Stop(ctx context.Context) error {
	d.notify(sddaemon.SdNotifyStopping)
	d.mu.Lock()
	c := d.cron
	d.mu.Unlock()
	if c != nil {
		c.Stop()
	}
	d.cancel() // Apply stops dispatching; each finished write is already committed
	done := make(chan struct{})
	go func() {
		d.jobs.Wait()
		d.syncing.Lock() // held for good: waits for a POST /sync run and lets no new one start
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("daemon: the running sync did not stop in time: %w", ctx.Err())
	}
	if d.stopWD != nil {
		close(d.stopWD)
	}
	d.stopServers(ctx)
	if err != nil {
		return err // the store stays open: closing it under a running sync would lose its commits
	}
	return d.store.Close()
}

func (d *Daemon) stopServers(ctx context.Context) {
	if d.admin != nil {
		_ = d.admin.Shutdown(ctx)
	}
	if d.scimSrv != nil {
		_ = d.scimSrv.Stop(ctx)
	}
}

// AdminAddr is the admin listener's bound address.
func (d *Daemon) AdminAddr() string {
	if d.adminLn == nil {
		return ""
	}
	return d.adminLn.Addr().String()
}

func (d *Daemon) notify(state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		d.log.Warn("systemd notify failed", zap.Error(err))
	}
}

// startWatchdog pings systemd at half of WatchdogSec when it asks for pings.
func (d *Daemon) startWatchdog() {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	d.stopWD = make(chan struct{})
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				d.notify(sddaemon.SdNotifyWatchdog)
			case <-d.stopWD:
				return
			}
		}
	}()
}

// countingSource counts LDAP entries read, for /metrics.
type countingSource struct {
	ldap.Source
	m *metrics
}

func (c countingSource) Users(ctx context.Context, attrs []string, fn func(ldap.Entry) error) error {
	return c.Source.Users(ctx, attrs, func(e ldap.Entry) error {
		c.m.ldapEntries.Inc()
		return fn(e)
	})
}
