package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scimsync/scimsync/ldap/slapdtest"
	"github.com/scimsync/scimsync/scim"
	"github.com/scimsync/scimsync/scimclient/targettest"
	"github.com/scimsync/scimsync/state"
)

// The crash-chaos test (issue 11): the real binary, killed with SIGKILL again and again in the
// middle of its writes, must end with every directory user on the target exactly once, linked
// in state, and a last run that writes nothing.
const (
	chaosUsers = 2000
	chaosKills = 10
	// chaosConcurrency is target.concurrency: several creates in flight at every kill.
	chaosConcurrency = 8
	// chaosDrip is how slowly the in-flight variant answers each POST, per byte of its body:
	// a create's answer (about 750 bytes) takes over 180 ms, so a kill lands while writes the
	// target has already applied are waiting for their answers.
	chaosDrip = 250 * time.Microsecond
	// chaosRandomMaxPerKill bounds the POSTs before each kill of the random variant: ten kills
	// take at most 1,500 creates plus what each process sends before its kill lands, so every
	// kill falls inside the writes of 2,000 users. Fixed in advance, the kill points depend on
	// the seed alone, and a seed replays them exactly.
	chaosRandomMaxPerKill = 150
	// chaosDripMaxPerKill bounds the POSTs before each kill of the in-flight variant, whose
	// creates are slow on purpose: what it tests is where the kill lands, not how many.
	chaosDripMaxPerKill = 40
	// chaosDeltaMaxPerKill bounds the PATCHes before each kill of the delta variant: PATCHes
	// are cheaper than creates, so more land between the kill's trigger and the kill itself,
	// and ten kills must fall inside 2,000
	chaosDeltaMaxPerKill = 100
	// chaosProcessTimeout bounds one scimsync process; every process here takes seconds.
	chaosProcessTimeout = 90 * time.Second
)

// TestSyncSurvivesSIGKILL kills `scimsync sync` ten times during its writes into a real SCIM
// server from a real slapd of 2,000 users, each process going on from where the last died, then
// runs it to the end (twice, and in the delta variant a full reconcile too), and checks what
// the target and the state file hold.
//
// "random" kills after a random number of POSTs (the kill lands anywhere: between batches of
// intents, between a write and its batched commit, in the middle of a commit); "in-flight"
// makes the target slow to answer creates, so that each kill lands while writes the target
// has applied are still unanswered, the case the intent journal exists for. "delta" syncs
// every user once, changes them all in the directory, and kills the delta runs that carry the
// change during their PATCHes.
//
// The kill points come from a seed, logged and taken from SCIMSYNC_CHAOS_SEED when set, so a
// failure can be replayed: the number of POSTs before each kill is the same, though what the
// process was doing at that moment (how far its commits had got) is a matter of timing.
func TestSyncSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos test runs 24 scimsync processes against slapd and a SCIM server; run it without -short")
	}
	seed := chaosSeed(t)
	t.Logf("chaos seed %d (replay: SCIMSYNC_CHAOS_SEED=%d go test -run TestSyncSurvivesSIGKILL ./cmd/scimsync)", seed, seed)
	var ldif strings.Builder
	for i := range chaosUsers {
		ldif.WriteString(slapdtest.Person(chaosName(i), slapdtest.UUID(i), "Chaos", fmt.Sprintf("Sn%d", i), chaosName(i)+"@example.org"))
	}
	ds := slapdtest.Start(t, ldif.String()) // the first two variants only read it
	t.Run("random", func(t *testing.T) { newChaos(t, ds, seed, 1, false).run() })
	t.Run("in-flight", func(t *testing.T) { newChaos(t, ds, seed, 2, true).run() })
	t.Run("delta", func(t *testing.T) { newChaos(t, ds, seed, 3, false).runDelta(ds) }) // changes every user
}

func chaosName(i int) string { return fmt.Sprintf("chaos%04d", i) }

func chaosSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("SCIMSYNC_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SCIMSYNC_CHAOS_SEED=%q: %v", s, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// chaos is one variant: its own target and state file; the directory is shared.
type chaos struct {
	t    *testing.T
	tg   *targettest.Target
	drip bool
	name string // the variant's name
	// killMethod is the write whose count triggers a kill: POST while creating, PATCH in the
	// delta variant
	killMethod string
	rnd        *rand.Rand
	dir        string
	cfgPath    string
	state      string
	runs       []*chaosRun
	stateLog   []string // what the state file held after each process, for a failure's report
	lastRun    uint64   // the newest run id in the state file
	// history is every change each process recorded, by externalId: "kill-3:create"
	history map[string][]string
	found   findings // what the checks found, along the way and at the end
}

// findings groups what the checks found by kind, with a few examples of each, so that a
// failure reads as a list of what went wrong rather than thousands of lines.
type findings struct {
	kinds  []string
	byKind map[string]*finding
}

type finding struct {
	n        int
	examples []string
}

func (f *findings) add(kind, example string) {
	if f.byKind == nil {
		f.byKind = map[string]*finding{}
	}
	k, ok := f.byKind[kind]
	if !ok {
		k = &finding{}
		f.byKind[kind] = k
		f.kinds = append(f.kinds, kind)
	}
	if k.n++; len(k.examples) < 8 {
		k.examples = append(k.examples, example)
	}
}

func (f *findings) String() string {
	var b strings.Builder
	for _, kind := range f.kinds {
		k := f.byKind[kind]
		fmt.Fprintf(&b, "%s (%d), e.g.:\n", kind, k.n)
		for _, e := range k.examples {
			fmt.Fprintf(&b, "    %s\n", strings.ReplaceAll(e, "\n", "\n    "))
		}
	}
	return b.String()
}

// chaosRun is one scimsync process and what it left behind.
type chaosRun struct {
	label     string
	killAfter int // killMethod requests the target had received when the process was killed; 0: not killed
	code      int // exit code; -1 when killed
	took      time.Duration
	requests  []targettest.Request
	logPath   string
	// after the process was gone
	targetUsers, links, intents int
	unrecorded                  map[string]bool   // externalIds on the target with an intent and no link: written, not committed
	inFlight                    int               // POSTs applied by the target whose answer was still being sent at the kill
	runID                       uint64            // the process's run in the state file; 0: it recorded none
	changes                     map[string]string // its change log: externalId -> action
	recovered                   int               // users it recorded from a dead process's intents
}

func (r *chaosRun) count(method string, status int) int {
	n := 0
	for _, q := range r.requests {
		if q.Method == method && (status == 0 || q.Status == status) {
			n++
		}
	}
	return n
}

func newChaos(t *testing.T, ds *slapdtest.Server, seed, variant uint64, drip bool) *chaos {
	c := &chaos{t: t, tg: targettest.Start(t), drip: drip, rnd: rand.New(rand.NewPCG(seed, variant)), dir: t.TempDir(),
		history: map[string][]string{}, name: map[uint64]string{1: "random", 2: "in-flight", 3: "delta"}[variant], killMethod: http.MethodPost}
	c.state = filepath.Join(c.dir, "sync.db")
	c.cfgPath = filepath.Join(c.dir, "sync.yaml")
	// requests_per_second 0: the default 20/s would make 2,000 creates take 100 s
	cfg := fmt.Sprintf(`ldap:
  url: %s
  bind_dn: %s
  bind_password: ${SCIMSYNC_CHAOS_LDAP_PW}
  base_dn: %s
target:
  url: %s
  token: ${SCIMSYNC_CHAOS_TOKEN}
  concurrency: %d
  requests_per_second: 0
state:
  path: %s
log:
  format: json
`, ds.URL, slapdtest.AdminDN, slapdtest.People, c.tg.URL, chaosConcurrency, c.state)
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *chaos) run() {
	t := c.t
	started := time.Now()
	if c.drip {
		c.tg.Set(func(b *targettest.Behaviour) { b.Drip, b.DripMethods = chaosDrip, []string{http.MethodPost} })
	}
	perKill := chaosRandomMaxPerKill
	if c.drip {
		perKill = chaosDripMaxPerKill
	}
	c.kills(perKill)
	c.tg.Reset()
	for i := range 2 {
		c.normal(fmt.Sprintf("normal-%d", i+1))
	}
	c.verify()
	c.report()
	t.Logf("%s variant: %d processes in %s", c.name, len(c.runs), time.Since(started).Round(time.Millisecond))
}

// kills runs chaosKills processes, each killed once the target has received a random number
// (at most perKill) of its killMethod requests in that process.
func (c *chaos) kills(perKill int) {
	t := c.t
	points := make([]int, chaosKills)
	for i := range points {
		points[i] = 1 + c.rnd.IntN(perKill)
	}
	t.Logf("kill points (%s requests each process sends before its kill): %v", c.killMethod, points)
	for kill, k := range points {
		r := c.process(fmt.Sprintf("kill-%d", kill+1), k)
		if r.killAfter == 0 {
			c.report()
			if len(c.found.kinds) > 0 {
				t.Errorf("found before:\n%s", c.found.String())
			}
			t.Fatalf("%s: the process ended by itself (exit %d) before the target had %d %s requests (it received %d), with %d users on the target; log:\n%s",
				r.label, r.code, k, c.killMethod, r.count(c.killMethod, 0), len(c.tg.Users()), tail(r.logPath, 40))
		}
	}
}

// normal runs one process to its end, which must succeed.
func (c *chaos) normal(label string, args ...string) *chaosRun {
	r := c.process(label, 0, args...)
	if r.code != 0 {
		c.report()
		c.t.Fatalf("%s: exit %d; log:\n%s", r.label, r.code, tail(r.logPath, 40))
	}
	return r
}

// runDelta is the delta variant: after a complete initial sync, every user's sn changes in the
// directory, and the delta runs that carry the change to the target (a GET and a PATCH per
// user) are killed ten times. Each killed process leaves the directory cursor where it was, so
// the next one reads the same delta again; users it already recorded cost nothing, and a PATCH
// it sent without recording is sent again or found done. Then two runs to the end and a full
// reconcile, which must all write nothing but what was left.
func (c *chaos) runDelta(ds *slapdtest.Server) {
	t := c.t
	started := time.Now()
	c.normal("initial")
	var mod strings.Builder
	for i := range chaosUsers {
		fmt.Fprintf(&mod, "dn: %s\nchangetype: modify\nreplace: sn\nsn: %s\n\n", slapdtest.PersonDN(chaosName(i)), chaosChangedSn(i))
	}
	ds.Modify(t, mod.String())
	c.killMethod = http.MethodPatch
	c.kills(chaosDeltaMaxPerKill)
	c.normal("normal-1")
	c.normal("normal-2")
	c.normal("full", "--full")
	c.verifyDelta()
	c.report()
	t.Logf("%s variant: %d processes in %s", c.name, len(c.runs), time.Since(started).Round(time.Millisecond))
}

func chaosChangedSn(i int) string { return fmt.Sprintf("Changed%d", i) }

// verifyDelta checks the delta variant's end state: every user on the target once, linked,
// with the changed sn, still active; nothing created, deleted or disabled along the way; no
// intent left; and the last run and the full reconcile wrote nothing.
func (c *chaos) verifyDelta() {
	t := c.t
	t.Helper()
	sf := c.readState()
	found := &c.found
	byExt := map[string][]scim.Doc{}
	for _, u := range c.tg.Users() {
		byExt[str(u, "externalId")] = append(byExt[str(u, "externalId")], u)
	}
	for i := range chaosUsers {
		ext, name := slapdtest.UUID(i), chaosName(i)
		us := byExt[ext]
		if len(us) != 1 {
			found.add("users not on the target exactly once", fmt.Sprintf("%s (externalId %s): %d", name, ext, len(us)))
			continue
		}
		u := us[0]
		n, _ := u["name"].(map[string]any)
		if got, _ := n["familyName"].(string); got != chaosChangedSn(i) {
			found.add("users without the directory's change on the target", fmt.Sprintf("%s: familyName %q, want %q", name, got, chaosChangedSn(i)))
		}
		if active, ok := u["active"].(bool); ok && !active {
			found.add("users disabled on the target", name)
		}
		if l, ok := sf.links[ext]; !ok || l.TargetID != str(u, "id") {
			found.add("users not linked to their target user", fmt.Sprintf("%s: link %+v, target id %s", name, l, str(u, "id")))
		}
	}
	if len(byExt) != chaosUsers || len(sf.links) != chaosUsers {
		found.add("wrong counts", fmt.Sprintf("%d externalIds on the target and %d links in state, want %d of each", len(byExt), len(sf.links), chaosUsers))
	}
	if len(sf.intents) > 0 {
		found.add("intents left after two complete runs", describeIntents(sf.intents))
	}
	for _, r := range c.runs[1:] { // after the initial sync
		for _, q := range r.requests {
			if q.Method == http.MethodPost || q.Method == http.MethodDelete || q.Method == http.MethodPut {
				found.add("creates, deletes or replaces sent by the delta runs", fmt.Sprintf("%s: %s %s -> %d", r.label, q.Method, q.URI, q.Status))
			}
		}
	}
	// the runs between the initial sync and the full reconcile were deltas: a full read would
	// list or search the target, and a delta reads its users by id only
	for _, r := range c.runs[1 : len(c.runs)-1] {
		for _, q := range r.requests {
			if q.Method == http.MethodGet && strings.Contains(q.URI, "?") {
				found.add("listings or searches in the delta runs (a full read instead of a delta)", fmt.Sprintf("%s: GET %s", r.label, q.URI))
			}
		}
	}
	for _, r := range c.runs[len(c.runs)-2:] { // normal-2 and the full reconcile
		for _, q := range r.requests {
			if q.Method != http.MethodGet {
				found.add("writes sent by the last run or the full reconcile", fmt.Sprintf("%s: %s %s -> %d", r.label, q.Method, q.URI, q.Status))
			}
		}
	}
	if len(found.kinds) > 0 {
		t.Errorf("%s", found.String())
	}
}

// process runs `scimsync sync` once; killAfter > 0 kills it with SIGKILL as soon as the target
// has received that many killMethod requests in this run.
func (c *chaos) process(label string, killAfter int, args ...string) *chaosRun {
	t := c.t
	t.Helper()
	r := &chaosRun{label: label, logPath: filepath.Join(c.dir, fmt.Sprintf("%02d-%s.log", len(c.runs)+1, label))}
	c.runs = append(c.runs, r)
	logf, err := os.Create(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.tg.ResetCounts()
	cmd := exec.Command(binary, append([]string{"sync", "--config", c.cfgPath}, args...)...)
	cmd.Env = append(os.Environ(), "SCIMSYNC_CHAOS_LDAP_PW="+slapdtest.AdminPW, "SCIMSYNC_CHAOS_TOKEN="+c.tg.Token)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// the target's request count is polled every millisecond: the kill lands within about a
	// millisecond of the POST that triggers it, in whatever the process is doing then
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	timeout := time.NewTimer(chaosProcessTimeout)
	defer timeout.Stop()
	var waitErr error
wait:
	for {
		select {
		case waitErr = <-done:
			break wait
		case <-poll.C:
			if killAfter > 0 && c.tg.Count(c.killMethod) >= int64(killAfter) {
				r.inFlight = c.tg.Answering(c.killMethod)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
					t.Fatalf("%s: kill: %v", label, err)
				}
				r.killAfter = killAfter
				waitErr = <-done
				break wait
			}
		case <-timeout.C:
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("%s: still running after %s; log:\n%s", label, chaosProcessTimeout, tail(r.logPath, 40))
		}
	}
	r.took = time.Since(start)
	var ee *exec.ExitError
	switch {
	case errors.As(waitErr, &ee):
		r.code = ee.ExitCode() // -1 when killed by a signal
	case waitErr != nil:
		t.Fatalf("%s: %v", label, waitErr)
	}
	if r.killAfter > 0 && r.code != -1 {
		r.killAfter, r.inFlight = 0, 0 // it had ended by itself before the kill
	}
	c.settle()
	r.requests = c.tg.Requests()
	if total := c.tg.Total(); int64(len(r.requests)) != total {
		t.Fatalf("%s: the target recorded %d of %d requests: the checks below need them all", label, len(r.requests), total)
	}
	c.inspect(r)
	return r
}

// settle waits until the target has finished the requests of a killed process: a POST being
// applied when its sender died must be on the target before the next process looks for it,
// or the next process would create it again because of the test's timing, not the engine's.
func (c *chaos) settle() {
	last, quiet := c.tg.Total(), 0
	for range 200 { // at most 2 s
		time.Sleep(10 * time.Millisecond)
		if n := c.tg.Total(); n != last {
			last, quiet = n, 0
			continue
		}
		if quiet++; quiet >= 10 {
			return
		}
	}
}

// inspect reads what the process left in the state file (read-only, the process is gone) and
// on the target. After a kill it checks the journal's promise: every user on the target is
// linked in state or has an intent, so the next run looks it up instead of creating it again.
// After the process that follows a kill it checks that the journal was used: each user the
// dead process wrote without committing is recorded from its intent ("record"), not adopted
// by the planner's own match (which would hide a broken journal, since the planner looks every
// user up on the target before creating it).
func (c *chaos) inspect(r *chaosRun) {
	t := c.t
	t.Helper()
	sf := c.readState()
	users := c.tg.Users()
	r.targetUsers, r.links, r.intents = len(users), len(sf.links), len(sf.intents)
	r.unrecorded = map[string]bool{}
	linkedTargets := map[string]string{}
	for ext, l := range sf.links {
		linkedTargets[l.TargetID] = ext
	}
	for _, u := range users {
		id, ext := str(u, "id"), str(u, "externalId")
		if _, ok := linkedTargets[id]; ok {
			continue
		}
		if in, ok := sf.intents[ext]; ok && in.Action == "create" {
			r.unrecorded[ext] = true
			continue
		}
		c.found.add("users on the target neither linked nor journalled as an intent after a kill: a write went unrecorded",
			fmt.Sprintf("after %s: %s (id %s, externalId %s, created %v)", r.label, str(u, "userName"), id, ext, meta(u, "created")))
	}
	if sf.run.ID > c.lastRun {
		c.lastRun, r.runID, r.changes = sf.run.ID, sf.run.ID, map[string]string{}
		for _, ch := range sf.changes {
			r.changes[ch.ExternalID] = ch.Action
			c.history[ch.ExternalID] = append(c.history[ch.ExternalID], r.label+":"+ch.Action)
		}
		for _, action := range r.changes {
			if action == "record" {
				r.recovered++
			}
		}
	}
	c.stateLog = append(c.stateLog, fmt.Sprintf("after %s (run %d): %d links, intents %s", r.label, r.runID, len(sf.links), describeIntents(sf.intents)))
	if len(c.runs) < 2 {
		return
	}
	prev := c.runs[len(c.runs)-2]
	for ext := range prev.unrecorded {
		if r.changes[ext] != "record" {
			c.found.add("users a dead process wrote without recording, not recorded from their intent by the next process",
				fmt.Sprintf("%s by %s: the change log of %s says %q", ext, prev.label, r.label, r.changes[ext]))
		}
	}
}

// stateFile is what the test reads of the state file.
type stateFile struct {
	links   map[string]state.Link
	intents map[string]state.Intent
	run     state.Run      // the newest run
	changes []state.Change // its change log
}

func (c *chaos) readState() stateFile {
	t := c.t
	t.Helper()
	st, err := state.Open(c.state, state.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open the state file read-only: %v", err)
	}
	defer st.Close()
	sf := stateFile{intents: map[string]state.Intent{}}
	if sf.links, err = st.Links(); err != nil {
		t.Fatal(err)
	}
	err = st.View(func(v *state.View) error {
		in, err := v.Intents(state.LinkUser)
		for _, i := range in {
			sf.intents[i.ExternalID] = i
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := st.Runs(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) == 1 {
		sf.run = runs[0]
		if sf.changes, err = st.Changes(sf.run.ID); err != nil {
			t.Fatal(err)
		}
	}
	return sf
}

// verify checks the end state: every directory user on the target exactly once and linked to
// it, no intent left, no create ever sent twice, and a last run that wrote nothing.
func (c *chaos) verify() {
	t := c.t
	t.Helper()
	users := c.tg.Users()
	byExt, byName := map[string][]scim.Doc{}, map[string][]scim.Doc{}
	for _, u := range users {
		byExt[str(u, "externalId")] = append(byExt[str(u, "externalId")], u)
		name := strings.ToLower(str(u, "userName"))
		byName[name] = append(byName[name], u)
	}
	sf := c.readState()
	links, intents := sf.links, sf.intents
	found := &c.found
	for key, us := range byExt {
		if len(us) > 1 {
			found.add("duplicate externalIds on the target", key+": "+c.describe(us, links, intents))
		}
	}
	for key, us := range byName {
		if len(us) > 1 {
			found.add("duplicate userNames on the target", key+": "+c.describe(us, links, intents))
		}
	}
	for i := range chaosUsers {
		ext, name := slapdtest.UUID(i), chaosName(i)
		us := byExt[ext]
		if len(us) == 0 {
			found.add("directory users missing on the target", fmt.Sprintf("%s (externalId %s); link %+v, intent %+v", name, ext, links[ext], intents[ext]))
			continue
		}
		if got := str(us[0], "userName"); got != name {
			found.add("users with the wrong userName on the target", fmt.Sprintf("externalId %s has %q, want %q", ext, got, name))
		}
		l, ok := links[ext]
		switch {
		case !ok:
			found.add("users on the target not linked in state", fmt.Sprintf("%s (externalId %s, target id %s)", name, ext, str(us[0], "id")))
		case l.TargetID != str(us[0], "id") || l.UserName != name:
			found.add("users linked to the wrong target user", fmt.Sprintf("%s linked to target id %s as %q, but the target holds it as %s", name, l.TargetID, l.UserName, str(us[0], "id")))
		}
	}
	if len(users) != chaosUsers || len(links) != chaosUsers {
		found.add("wrong counts", fmt.Sprintf("%d users on the target and %d links in state, want %d of each", len(users), len(links), chaosUsers))
	}
	if len(intents) > 0 {
		found.add("intents left after two complete runs", describeIntents(intents))
	}
	// A 409 to a POST means a create was sent for a user the target already held: the intent
	// journal (an intent recorded before each write, looked up by the next run) must prevent
	// that whatever the target enforces. This target refuses a second userName with 409, so
	// the duplicate does not show on it, and only the 409 says the create went out twice;
	// a target that does not enforce uniqueness would hold the duplicate instead.
	created := 0
	for _, r := range c.runs {
		created += r.count(http.MethodPost, http.StatusCreated)
		for n, q := range r.requests {
			if q.Method == http.MethodPost && q.Status == http.StatusConflict {
				found.add("POSTs answered 409: a create sent twice", fmt.Sprintf("%s: POST answered 409 at %s; the requests around it:\n%s",
					r.label, q.At.Format("15:04:05.000000"), around(r.requests, n, 4)))
			}
		}
	}
	// every user was created exactly once: as many creates acknowledged as users
	if created != chaosUsers {
		found.add("wrong counts", fmt.Sprintf("%d POSTs answered 201 over all runs, want exactly %d (one per user)", created, chaosUsers))
	}
	// and the history says so: created by one process, or recorded by one process from the
	// intent of a create a dead process sent, and nothing else (an adopt would be a user
	// created by a process that left no trace). A recovered user is recorded once: its link
	// from the intent and the hash of what the target holds go into one record.
	for i := range chaosUsers {
		ext := slapdtest.UUID(i)
		h := c.history[ext]
		if len(h) != 1 || !(strings.HasSuffix(h[0], ":create") || strings.HasSuffix(h[0], ":record")) {
			found.add("users whose change log over all runs is not one create or one record", fmt.Sprintf("%s: %v", chaosName(i), c.history[ext]))
		}
	}
	last := c.runs[len(c.runs)-1]
	var writes []string
	for _, q := range last.requests {
		if q.Method != http.MethodGet {
			writes = append(writes, fmt.Sprintf("%s %s -> %d", q.Method, q.URI, q.Status))
		}
	}
	if len(writes) > 0 {
		found.add("writes sent by the last run", fmt.Sprintf("%d: %s", len(writes), strings.Join(writes[:min(len(writes), 10)], "; ")))
	}
	if c.drip {
		// the variant is only worth its time if the kills land while writes the target has
		// made are unanswered; the poll that kills is within a millisecond of a POST whose
		// answer drips for over 180 ms, so this allows for a badly stalled test process only
		landed := 0
		for _, r := range c.runs {
			if r.inFlight > 0 {
				landed++
			}
		}
		if landed*2 < chaosKills {
			found.add("kills that missed", fmt.Sprintf("only %d of %d kills landed while a create was unanswered", landed, chaosKills))
		}
	}
	if len(found.kinds) > 0 {
		t.Errorf("%s", found.String())
	}
}

// report logs every process of the variant and what it left, for a failure's reader.
func (c *chaos) report() {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %5s %4s %5s %5s %7s %5s %5s %7s %10s %9s %9s %8s\n", "process", "kill@", "exit", "POSTs", "201s", "PATCHes",
		"users", "links", "intents", "unrecorded", "in-flight", "recovered", "took")
	for _, r := range c.runs {
		kill := "-"
		if r.killAfter > 0 {
			kill = strconv.Itoa(r.killAfter)
		}
		fmt.Fprintf(&b, "%-9s %5s %4d %5d %5d %7d %5d %5d %7d %10d %9d %9d %8s\n", r.label, kill, r.code, r.count(http.MethodPost, 0),
			r.count(http.MethodPost, http.StatusCreated), r.count(http.MethodPatch, 0), r.targetUsers, r.links, r.intents, len(r.unrecorded),
			r.inFlight, r.recovered, r.took.Round(time.Millisecond))
	}
	c.t.Logf("variant %s:\n%s", c.name, b.String())
	if c.t.Failed() || len(c.found.kinds) > 0 {
		c.t.Logf("state after each process:\n%s", strings.Join(c.stateLog, "\n"))
	}
}

// describe says, for users that should be one, when each was created and what state holds.
func (c *chaos) describe(us []scim.Doc, links map[string]state.Link, intents map[string]state.Intent) string {
	var parts []string
	for _, u := range us {
		ext := str(u, "externalId")
		parts = append(parts, fmt.Sprintf("[id %s userName %s externalId %s created %v; link %+v; intent %+v; created during %s]",
			str(u, "id"), str(u, "userName"), ext, meta(u, "created"), links[ext], intents[ext], c.runAt(meta(u, "created"))))
	}
	return strings.Join(parts, " ")
}

// runAt names the process whose requests span the time t (an RFC 3339 string).
func (c *chaos) runAt(at any) string {
	s, _ := at.(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "?"
	}
	for _, r := range c.runs {
		if len(r.requests) > 0 && !ts.Before(r.requests[0].At.Add(-time.Second)) && !ts.After(r.requests[len(r.requests)-1].At.Add(time.Second)) {
			return r.label
		}
	}
	return "?"
}

func describeIntents(intents map[string]state.Intent) string {
	if len(intents) == 0 {
		return "none"
	}
	var parts []string
	for _, in := range intents {
		parts = append(parts, fmt.Sprintf("%s %s(%s) run %d", in.Action, in.Name, in.ExternalID, in.RunID))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d: %s", len(parts), strings.Join(parts[:min(len(parts), 30)], ", "))
}

func around(reqs []targettest.Request, n, width int) string {
	var b strings.Builder
	for i := max(0, n-width); i < min(len(reqs), n+width+1); i++ {
		mark := "  "
		if i == n {
			mark = "->"
		}
		fmt.Fprintf(&b, "  %s %s %s %s -> %d\n", mark, reqs[i].At.Format("15:04:05.000000"), reqs[i].Method, reqs[i].URI, reqs[i].Status)
	}
	return b.String()
}

func str(d scim.Doc, key string) string {
	s, _ := d[key].(string)
	return s
}

func meta(d scim.Doc, key string) any {
	m, _ := d["meta"].(map[string]any)
	return m[key]
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
