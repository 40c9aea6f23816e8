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
	"runtime/debug"
	gosync "sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/daemon/notify"
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
	Groups  *sync.GroupsConfig       // nil: groups are not synced
	Server  *scimserver.ServerConfig // nil: no SCIM server in this process
	Admin   AdminConfig
	State   state.Config
	Notify  notify.Config
	Level   string // log level
	// ProgressInterval is how often a long sync logs its progress and updates STATUS= (default 5s).
	ProgressInterval time.Duration
	// Redactor knows every secret of the configuration (the target client and stored run errors).
	Redactor *config.Redactor
}

// BuildInfo identifies the binary, for scimsync_build_info and the webhooks' User-Agent.
type BuildInfo struct {
	Version, Commit, Date, GoVersion string
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

// SyncOptions narrow or loosen one run started through the daemon (POST /sync).
type SyncOptions struct {
	DryRun           bool   // plan only; nothing is written or recorded
	User             string // this one userName only
	AllowDeprovision int    // approve up to N disables/deletes held back by the safety limits
	AllowRecreate    int    // approve creating again up to N users the target lost
	Full             bool   // a full reconcile, whether it is due or not
}

// PlanOptions are the engine's options for these.
func (o SyncOptions) PlanOptions() sync.PlanOptions {
	return sync.PlanOptions{OnlyUser: o.User, AllowDeprovision: o.AllowDeprovision, AllowRecreate: o.AllowRecreate, Full: o.Full}
}

// Outcome is what one run planned and did, and the SCIM requests it took.
type Outcome struct {
	Plan   *sync.Plan
	Result *sync.Result
	Stats  scimclient.StatsSnapshot
}

// Daemon is one `scimsync run` process.
type Daemon struct {
	load  Loader
	log   *zap.Logger
	level zap.AtomicLevel
	build BuildInfo
	reg   *prometheus.Registry
	m     *metrics

	mu       gosync.Mutex // guards cur, cron fields, last*, notifier, prog
	cur      *Settings
	cron     *cron.Cron
	entry    cron.EntryID
	lastRun  *state.Run
	lastErr  string
	ldapOK   *bool
	targetOK *bool
	notifier *notify.Notifier
	prog     *Progress // the running sync's, for the watchdog

	// watchdog: the scheduler loop proves it is alive by running beat every beatEvery
	wdInterval time.Duration
	beatEvery  time.Duration
	lastBeat   atomic.Int64 // unix nanos
	wdSick     atomic.Bool  // a "not pinging" error was logged for the current streak

	syncing  gosync.Mutex // held while a sync runs: never two at once
	running  atomic.Bool
	store    *state.Store
	scimSrv  *scimserver.Server
	admin    *http.Server
	adminLn  net.Listener
	adminTok config.Secret

	// runSync performs one run; it is runOnce except in tests that need a sync to panic.
	runSync func(ctx context.Context, opts SyncOptions) (*Outcome, error)

	ctx    context.Context // cancelled by Stop: running syncs stop at a safe point
	cancel context.CancelFunc
	jobs   gosync.WaitGroup
	stopWD chan struct{}
}

// New builds a daemon from validated settings. Nothing is opened until Start.
func New(s *Settings, load Loader, log *zap.Logger, level zap.AtomicLevel, build BuildInfo) (*Daemon, error) {
	if err := ValidateSchedule(s.Sync.Schedule, s.Sync.Timezone); err != nil {
		return nil, fmt.Errorf("daemon: sync.%w", err)
	}
	tok, err := config.ResolveSecret(s.Admin.Token, s.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("daemon: admin token: %w", err)
	}
	warnShortAdminToken(log, tok)
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, build)
	n, err := notify.New(s.Notify, build.Version, log, m.notifications)
	if err != nil {
		return nil, err
	}
	d := &Daemon{load: load, log: log, level: level, build: build, reg: reg, m: m, cur: s, adminTok: tok, notifier: n}
	d.runSync = d.runOnce
	return d, nil
}

// warnShortAdminToken warns when the admin token, which triggers syncs and sets overrides, is
// short enough to guess.
func warnShortAdminToken(log *zap.Logger, tok config.Secret) {
	if !tok.IsZero() && config.ShortToken(tok.Reveal()) {
		log.Warn(fmt.Sprintf("admin.token is shorter than %d characters: a short token can be guessed; use a random one (openssl rand -hex 32)", config.MinTokenLength))
	}
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
	if host, _, _ := net.SplitHostPort(s.Admin.Listen); !config.LoopbackHost(host) {
		d.log.Warn("admin.listen is not a loopback address: /healthz, /readyz, /metrics and the counts of /status answer anyone who reaches it, and the admin token crosses the network in clear (plain HTTP); put it behind a TLS proxy or firewall, or listen on 127.0.0.1",
			zap.String("listen", s.Admin.Listen))
	}
	d.admin = d.newAdminServer()
	go func() { _ = d.admin.Serve(d.adminLn) }()
	if wd, err := sddaemon.SdWatchdogEnabled(false); err == nil && wd > 0 {
		d.wdInterval = wd
		d.beatEvery = max(time.Second, wd/4)
	}
	d.beat()
	if err := d.schedule(s); err != nil {
		d.stopServers(context.Background())
		return err
	}
	if runs, err := st.Runs(1); err == nil && len(runs) > 0 {
		d.lastRun = &runs[0]
		d.m.setLastResult(runs[0].Result)
	}
	d.updateManaged()
	d.releaseMapped() // what start-up read of the state file need not stay resident
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
	if d.beatEvery > 0 {
		// the watchdog pings only while this runs: a wedged scheduler stops the pings
		c.Schedule(cron.Every(d.beatEvery), cron.FuncJob(d.beat))
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
	out, err := d.SyncNow(d.ctx, SyncOptions{})
	if out != nil {
		_ = out.Plan.Close()
	}
	if errors.Is(err, ErrBusy) {
		d.m.skipped.Inc()
		d.log.Info("scheduled sync skipped: the previous one is still running")
	}
}

// SyncNow runs one sync (or, with opts.DryRun, plans one) unless one is running. A panic inside
// the run is recovered, logged and counted; the daemon keeps going.
func (d *Daemon) SyncNow(ctx context.Context, opts SyncOptions) (out *Outcome, err error) {
	if !d.syncing.TryLock() {
		return nil, ErrBusy
	}
	defer d.syncing.Unlock()
	// a run that writes, with its recording, under the run's memory budget; a dry run or one
	// user does not pay for two collections. With a SCIM server in the process the limit
	// would also bind the server's writes (an IdP may provision during a long run), so then
	// only what the run read and freed is given back.
	switch {
	case opts.DryRun || opts.User != "":
	case d.scimSrv != nil:
		defer func() { debug.FreeOSMemory(); d.releaseMapped() }()
	default:
		defer limitRunMemory(runMemoryBudget, d.releaseMapped)()
	}
	d.running.Store(true)
	defer d.running.Store(false)
	defer func() {
		if r := recover(); r != nil {
			d.m.panics.Inc()
			err = fmt.Errorf("daemon: sync panicked: %v", r)
			d.log.Error("sync panicked", zap.Any("panic", r), zap.Stack("stack"))
		}
		// the error goes to POST /sync's report and the CLI: it may quote what the directory
		// or the target answered, or a panic's value
		err = d.redactor().Error(err)
	}()
	started := time.Now()
	out, err = d.runSync(ctx, opts)
	if !opts.DryRun && !errors.Is(err, sync.ErrUserNotFound) {
		d.recordOutcome(started, opts, out, err)
	}
	return out, err
}

// releaseEvery is how many links a scan reads between two releases of the pages it read.
const releaseEvery = 5000

// releaseMapped drops the state file's pages from the resident set (they stay in the page
// cache): an idle daemon need not hold what its start-up or its last run read.
func (d *Daemon) releaseMapped() {
	if d.store == nil { // tests that run no engine
		return
	}
	if err := d.store.ReleaseMappedPages(); err != nil {
		d.log.Debug("could not release the state file's mapped pages", zap.Error(err))
	}
}

// redactor is the process's one Redactor (nil, which redacts nothing, before settings exist).
func (d *Daemon) redactor() *config.Redactor {
	if s := d.settings(); s != nil {
		return s.Redactor
	}
	return nil
}

// runOnce is the daemon's one call site of the sync engine: open, plan, record a failed plan,
// apply. Everything around it (metrics, history, alerts) works on what it returns.
func (d *Daemon) runOnce(ctx context.Context, opts SyncOptions) (*Outcome, error) {
	s := d.settings()
	interval := s.ProgressInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	prog := NewProgress(d.log, func(st string) { d.notify("STATUS=" + st) }, interval)
	d.mu.Lock()
	d.prog = prog
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.prog = nil
		d.mu.Unlock()
	}()
	eng, tgt, err := sync.Open(sync.Sections{LDAP: s.LDAP, Target: s.Target, Mapping: s.Mapping, Sync: s.Sync, Groups: s.Groups, Redactor: s.Redactor}, d.store, d.log,
		func(src sync.Source) sync.Source { return countingSource{src, d.m, prog} })
	if err != nil {
		return nil, err
	}
	tgt.Observe(func(method string, status int) {
		d.m.observeSCIM(method, status)
		prog.Touch()
	})
	started := time.Now()
	plan, err := eng.Plan(ctx, opts.PlanOptions())
	d.contact(err)
	if err != nil {
		if !opts.DryRun && !errors.Is(err, sync.ErrUserNotFound) {
			if rerr := eng.RecordFailure(started, err); rerr != nil {
				d.log.Error("could not record the failed run", zap.Error(rerr))
			}
		}
		return nil, err
	}
	out := &Outcome{Plan: plan}
	if opts.DryRun {
		out.Stats = tgt.Stats()
		return out, nil
	}
	out.Result, err = eng.Apply(ctx, plan, prog.Apply)
	out.Stats = tgt.Stats()
	d.m.retries.Add(float64(out.Stats.Retries))
	return out, err
}

// contact records whether the directory and the target answered, for /readyz. A read that
// failed or came back empty stopped the run before the target was contacted.
func (d *Daemon) contact(err error) {
	t, f := true, false
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err == nil, errors.Is(err, sync.ErrUserNotFound):
		d.ldapOK, d.targetOK = &t, &t
	case errors.Is(err, sync.ErrSourceFailed):
		d.ldapOK = &f
	case errors.Is(err, sync.ErrEmptySource):
		d.ldapOK = &t
	default:
		d.ldapOK, d.targetOK = &t, &f
	}
}

// maxChangeLines bounds the per-user log lines of one run; the rest is in `scimsync runs show`.
const maxChangeLines = 1000

func (d *Daemon) recordOutcome(started time.Time, opts SyncOptions, out *Outcome, err error) {
	result := "ok"
	switch {
	case errors.Is(err, sync.ErrSafetyLimit), errors.Is(err, sync.ErrEmptySource):
		result = "stopped"
	case errors.Is(err, context.Canceled):
		result = "cancelled"
	case err != nil:
		result = "error"
	}
	var plan *sync.Plan
	var res *sync.Result
	if out != nil {
		plan, res = out.Plan, out.Result
	}
	d.m.runs.WithLabelValues(result).Inc()
	d.m.duration.Observe(time.Since(started).Seconds())
	d.m.setLastResult(result)
	if plan != nil {
		d.m.unchanged.Add(float64(plan.Unchanged))
		d.m.countFallbacks(plan)
	}
	if res != nil {
		for a, n := range res.Done {
			d.m.users.WithLabelValues(string(a)).Add(float64(n))
		}
		if res.Adopted > 0 {
			d.m.users.WithLabelValues("adopt").Add(float64(res.Adopted))
		}
		d.logChanges(plan, res)
	}
	if result == "ok" {
		d.m.lastSuccess.SetToCurrentTime()
	}
	s := d.settings()
	if berr := Bookkeep(d.store, s.State, plan, res, time.Now()); berr != nil {
		d.log.Warn("run history bookkeeping incomplete", zap.Error(berr))
	}
	runs, _ := d.store.Runs(20)
	d.mu.Lock()
	if len(runs) > 0 {
		d.lastRun = &runs[0]
	}
	d.lastErr = ""
	if err != nil {
		d.lastErr = s.Redactor.Redact(err.Error()) // shown by GET /status
	}
	n := d.notifier
	d.mu.Unlock()
	d.updateManaged()
	if err != nil {
		d.log.Error("sync finished with an error", zap.String("result", result), zap.Error(err))
	} else {
		d.log.Info("sync finished", zap.String("summary", sync.ResultLine(res)))
	}
	d.notify("STATUS=" + d.statusLine())
	// a one-user run says nothing about the directory as a whole: no alert from it
	if opts.User == "" && result != "cancelled" {
		// not cancelled by Stop, which waits for the delivery (bounded by its own timeout)
		n.Go(context.WithoutCancel(d.ctx), notify.Evaluate(runs, s.Notify.InvalidThreshold))
	}
}

// logChanges names every user the run changed (up to maxChangeLines), so the journal answers
// "what happened to alice" without the state file.
func (d *Daemon) logChanges(plan *sync.Plan, res *sync.Result) {
	if plan == nil {
		return
	}
	failed := map[string]bool{}
	for _, f := range res.Failed {
		failed[f.UserName+"\x00"+string(f.Action)] = true
	}
	n := 0
	_ = plan.Each(func(it sync.Item) error {
		switch it.Action {
		case sync.ActionCreate, sync.ActionUpdate, sync.ActionDisable, sync.ActionDelete:
		default:
			return nil
		}
		if it.Blocked || failed[it.Name+"\x00"+string(it.Action)] {
			return nil
		}
		n++
		if n > maxChangeLines {
			return nil
		}
		attrs := make([]string, 0, len(it.Changes))
		for _, c := range it.Changes {
			attrs = append(attrs, c.Attribute)
		}
		d.log.Info("changed", zap.Uint64("run", res.RunID), zap.String("kind", string(it.Kind)), zap.String("name", it.Name),
			zap.String("action", string(it.Action)), zap.Strings("attributes", attrs))
		return nil
	})
	if n > maxChangeLines {
		d.log.Info("more users changed than logged one by one", zap.Uint64("run", res.RunID), zap.Int("not_logged", n-maxChangeLines),
			zap.String("see", fmt.Sprintf("scimsync runs show %d", res.RunID)))
	}
}

// updateManaged sets scimsync_managed_users from the links in state. It counts as it reads,
// dropping the pages it has read from the resident set as it goes: holding every link at once
// (and every page of them) put a daemon of 100,000 users above its run's peak after each run.
func (d *Daemon) updateManaged() {
	active, disabled := 0, 0
	err := d.store.View(func(v *state.View) error {
		n := 0
		return v.ForEachLink(state.LinkUser, func(l state.Link) error {
			if l.DisabledAt.IsZero() {
				active++
			} else {
				disabled++
			}
			if n++; n%releaseEvery == 0 {
				v.Release()
			}
			return nil
		})
	})
	if err != nil {
		d.log.Warn("cannot count managed users", zap.Error(err))
		return
	}
	d.m.managed.WithLabelValues("active").Set(float64(active))
	d.m.managed.WithLabelValues("disabled").Set(float64(disabled))
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
	d.notify("RELOADING=1\nMONOTONIC_USEC=" + fmt.Sprint(monotonicUsec()))
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
	warnShortAdminToken(d.log, tok)
	cur := d.settings()
	if next.State.Path != cur.State.Path || next.Admin.Listen != cur.Admin.Listen || !reflect.DeepEqual(next.Server, cur.Server) {
		d.log.Warn("state.path, admin.listen and the server section (listener, tokens, TLS) take effect only after a restart")
	}
	n, err := notify.New(next.Notify, d.build.Version, d.log, d.m.notifications)
	if err != nil {
		d.m.reloads.WithLabelValues("rejected").Inc()
		d.log.Error("reload rejected; the running configuration stays", zap.Error(err))
		return err
	}
	if lvl, err := zap.ParseAtomicLevel(next.Level); err == nil {
		d.level.SetLevel(lvl.Level())
	}
	d.mu.Lock()
	d.cur, d.adminTok, d.notifier = next, tok, n
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
	d.mu.Lock()
	n := d.notifier
	d.mu.Unlock()
	if nerr := n.Wait(ctx); nerr != nil {
		d.log.Warn("stopping before every notification was delivered", zap.Error(nerr))
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

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC
// with (the wall clock can jump).
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// beat is the scheduler's heartbeat job. Taking d.mu proves the daemon's state is not wedged
// either.
func (d *Daemon) beat() {
	d.mu.Lock()
	d.mu.Unlock() //nolint:staticcheck // an empty critical section on purpose: see above
	d.lastBeat.Store(time.Now().UnixNano())
}

// stallLimit is how long a running sync may show no sign of life (no entry read, no SCIM
// answer, no write done) before the watchdog deems it hung: the longest single wait it can
// legitimately have, which is a Retry-After (capped at 10 minutes by the client) or one
// request's timeout, plus a minute.
func stallLimit(s *Settings) time.Duration {
	return max(s.LDAP.RequestTimeout.D(), s.LDAP.DialTimeout.D(), s.Target.Timeout.D()) + 11*time.Minute
}

// unhealthy says why the watchdog must not ping now, or "" when all is well: the scheduler
// loop stopped beating, or the running sync is hung.
func (d *Daemon) unhealthy(now time.Time) string {
	if age := now.Sub(time.Unix(0, d.lastBeat.Load())); age > 2*d.beatEvery+time.Second {
		return fmt.Sprintf("the scheduler loop has not run for %s", age.Round(time.Second))
	}
	d.mu.Lock()
	p, s := d.prog, d.cur
	d.mu.Unlock()
	if p != nil {
		if quiet := now.Sub(p.LastActivity()); quiet > stallLimit(s) {
			return fmt.Sprintf("the running sync has shown no activity for %s", quiet.Round(time.Second))
		}
	}
	return ""
}

// startWatchdog pings systemd at half of WatchdogSec, but only while unhealthy finds nothing:
// systemd then restarts a daemon whose scheduler or sync is stuck.
func (d *Daemon) startWatchdog() {
	if d.wdInterval <= 0 {
		return
	}
	d.stopWD = make(chan struct{})
	go func() {
		t := time.NewTicker(d.wdInterval / 2)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				if why := d.unhealthy(now); why != "" {
					if !d.wdSick.Swap(true) {
						d.log.Error("watchdog: not pinging systemd, which will restart the service", zap.String("reason", why))
					}
					continue
				}
				if d.wdSick.Swap(false) {
					d.log.Info("watchdog: healthy again")
				}
				d.notify(sddaemon.SdNotifyWatchdog)
			case <-d.stopWD:
				return
			}
		}
	}()
}

// countingSource counts directory changes read, for /metrics and the run's progress.
type countingSource struct {
	sync.Source
	m    *metrics
	prog *Progress
}

func (c countingSource) Read(ctx context.Context, q ldap.Query, cur *ldap.Cursor, fn func(ldap.Change) error) (ldap.ReadResult, error) {
	return c.Source.Read(ctx, q, cur, func(ch ldap.Change) error {
		c.m.ldapEntries.Inc()
		c.prog.Read()
		return fn(ch)
	})
}
