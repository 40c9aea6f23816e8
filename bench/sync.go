package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/scimsync/scimsync/ldap/slapdtest"
	scimsync "github.com/scimsync/scimsync/sync"
)

// benchSync measures `scimsync sync` at scale: n users loaded into slapd with slapadd, synced into
// `scimsync serve`, each run a separate process timed from outside with its peak RSS from GNU
// time. Baselines measured in the same run: ldapsearch over the same entries before each row, and
// the target's raw create rate at the sync's concurrency (POSTs of n/5 users into a fresh server).
func benchSync(tb *benchTB, args []string) error {
	fs := flag.NewFlagSet("bench sync", flag.ContinueOnError)
	n := fs.Int("n", 100000, "users in the directory")
	conc := fs.Int("c", 16, "target.concurrency of the sync and clients of the raw create baseline")
	changes := fs.Int("changes", 100, "users changed for the delta row")
	logLevel := fs.String("log", "warn", "the sync's log level (info shows how long planning and applying take)")
	groups := fs.Int("groups", 2000, "groups of -group-size members, plus one of -big-group members (0: no groups)")
	groupSize := fs.Int("group-size", 50, "members of each group")
	bigGroup := fs.Int("big-group", 10000, "members of the one big group")
	pin := fs.Bool("pin", true, "run the target alone on the last CPU and everything else on the others, as an independent target would be (false: all share every CPU)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pinned := false
	if *pin {
		var err error
		if pinned, err = pinTarget(); err != nil {
			return fmt.Errorf("pinning the target to a CPU: %w", err)
		}
	}
	if _, err := exec.LookPath("/usr/bin/time"); err != nil {
		return errors.New("bench sync measures peak RSS with GNU time: apt-get install time")
	}
	fmt.Fprintf(os.Stderr, "bench sync: loading %d users into slapd\n", *n)
	var seed strings.Builder
	for i := 0; i < *n; i++ {
		seed.WriteString(slapdtest.Person(fmt.Sprintf("user%06d", i), slapdtest.UUID(i), "Given", fmt.Sprintf("Sn%d", i),
			fmt.Sprintf("user%06d@example.org", i)))
	}
	if *groups > 0 {
		for g := 0; g < *groups; g++ {
			members := make([]string, 0, *groupSize)
			for m := 0; m < *groupSize; m++ {
				members = append(members, slapdtest.PersonDN(fmt.Sprintf("user%06d", (g*(*groupSize)+m*7)%*n)))
			}
			seed.WriteString(slapdtest.GroupOfNames(fmt.Sprintf("group%05d", g), members...))
		}
		members := make([]string, 0, *bigGroup)
		for m := 0; m < min(*bigGroup, *n); m++ {
			members = append(members, slapdtest.PersonDN(fmt.Sprintf("user%06d", m)))
		}
		seed.WriteString(slapdtest.GroupOfNames("everyone", members...))
	}
	ds := slapdtest.Start(tb, seed.String())
	seed.Reset()
	bin := build(tb)

	baseSrv, _ := startServe(tb, bin, tb.TempDir(), freeAddr())
	base := baseSrv.base
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "sync.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`ldap:
  url: %s
  bind_dn: %s
  bind_password: %s
  base_dn: %s
  page_size: 1000
target:
  url: %s
  token: %s
  concurrency: %d
  requests_per_second: 0
  page_size: 1000
sync:
  max_deprovision_percent: 1
state:
  path: %s/sync.db
log:
  level: %s
%s`, ds.URL, slapdtest.AdminDN, slapdtest.AdminPW, slapdtest.People, base, token, *conc, dir, *logLevel, groupsSection(*groups))), 0o600)

	// the target's raw create rate at the same concurrency: the very documents the sync will
	// send (taken from its dry run's plan, so the target does the same work per user), POSTed
	// by a plain client into a fresh server
	fmt.Fprintf(os.Stderr, "bench sync: dry run, for the documents the sync creates\n")
	bodies, err := planBodies(bin, cfg)
	if err != nil {
		return fmt.Errorf("raw create baseline: %w", err)
	}
	if len(bodies) != *n {
		return fmt.Errorf("raw create baseline: the dry run plans %d user creates, want %d", len(bodies), *n)
	}
	rawN := len(bodies)
	bodyBytes := 0
	for _, b := range bodies {
		bodyBytes += len(b)
	}
	// measured twice, right before and right after the initial sync, each into a fresh server;
	// the faster one is the baseline (this disk's stalls make one measurement swing by a third)
	var rawStats []stat
	measureRaw := func() error {
		rawSrv, _ := startServe(tb, bin, tb.TempDir(), freeAddr())
		defer rawSrv.stop()
		raw := rawSrv.base
		fmt.Fprintf(os.Stderr, "bench sync: raw create rate, %d POSTs with %d clients\n", rawN, *conc)
		st, err := load("raw create", *conc, rawN, []int{201}, func(i int) (string, string, []byte) {
			return "POST", raw + "/Users", bodies[i]
		})
		if err != nil {
			return fmt.Errorf("raw create baseline: %w", err)
		}
		rawStats = append(rawStats, st)
		return nil
	}
	if err := measureRaw(); err != nil {
		return err
	}

	ldapsearch := func() (time.Duration, error) {
		t0 := time.Now()
		out, err := exec.Command("ldapsearch", "-x", "-LLL", "-H", ds.URL, "-D", slapdtest.AdminDN, "-w", slapdtest.AdminPW,
			"-b", slapdtest.People, "-E", "pr=1000/noprompt", "(objectClass=inetOrgPerson)",
			"uid", "cn", "sn", "givenName", "mail", "displayName", "title", "entryUUID").Output()
		if err == nil && bytes.Count(out, []byte("\ndn: "))+1 != *n {
			err = fmt.Errorf("ldapsearch returned %d entries", bytes.Count(out, []byte("\ndn: "))+1)
		}
		if err == nil && *groups > 0 {
			// the groups a sync reads too, with their members
			_, err = exec.Command("ldapsearch", "-x", "-LLL", "-H", ds.URL, "-D", slapdtest.AdminDN, "-w", slapdtest.AdminPW,
				"-b", slapdtest.Groups, "-E", "pr=1000/noprompt", "(objectClass=groupOfNames)", "cn", "member", "entryUUID").Output()
		}
		return time.Since(t0), err
	}
	type row struct {
		name           string
		users          int
		wall           time.Duration
		rssKiB         int64
		requests       int64
		writes         int64
		mode           string
		ldap           time.Duration
		wantWrites     int64
		wantWritesText string
		phases         []scimsync.PhaseTime
	}
	var rows []row
	run := func(name string, users int, wantWrites int64, extra ...string) error {
		ls, err := ldapsearch()
		if err != nil {
			return fmt.Errorf("ldapsearch baseline: %w", err)
		}
		fmt.Fprintf(os.Stderr, "bench sync: %s\n", name)
		m, err := syncProcess(bin, append([]string{"sync", "--config", cfg, "--output", "json"}, extra...))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, row{name: name, users: users, wall: m.wall, rssKiB: m.rssKiB, requests: m.requests, writes: m.writes,
			mode: m.mode, ldap: ls, wantWrites: wantWrites, phases: m.phases})
		if wantWrites >= 0 && m.writes != wantWrites {
			return fmt.Errorf("%s: %d writes, want %d", name, m.writes, wantWrites)
		}
		return nil
	}
	// users, then groups: every group a POST, and a PATCH per further batch of 100 members
	initialWrites := int64(*n)
	if *groups > 0 {
		initialWrites += int64(*groups) + int64(*groups)*int64(max(*groupSize-1, 0)/100) + 1 + int64((min(*bigGroup, *n)-1)/100)
	}
	if err := run("initial sync", *n, initialWrites); err != nil {
		return err
	}
	if err := measureRaw(); err != nil {
		return err
	}
	bodies = nil
	rawStat := rawStats[0]
	if rawStats[1].rate() > rawStat.rate() {
		rawStat = rawStats[1]
	}
	if err := run("no change", *n, 0); err != nil {
		return err
	}
	var mods strings.Builder
	for i := 0; i < *changes; i++ {
		fmt.Fprintf(&mods, "dn: %s\nchangetype: modify\nreplace: title\ntitle: Changed %d\n\n", slapdtest.PersonDN(fmt.Sprintf("user%06d", i*(*n / *changes))), i)
	}
	ds.Modify(tb, mods.String())
	if err := run(fmt.Sprintf("%d changes", *changes), *changes, int64(*changes)); err != nil {
		return err
	}
	if *groups > 0 {
		ds.AddValues(tb, slapdtest.GroupDN("group00007"), "member", slapdtest.PersonDN(fmt.Sprintf("user%06d", *n-1)))
		if err := run("1 membership change", 1, 1); err != nil {
			return err
		}
	}
	one := fmt.Sprintf("user%06d", *n/2)
	ds.Replace(tb, slapdtest.PersonDN(one), "title", "Promoted")
	if err := run("one user", 1, 1, "--user", one); err != nil {
		return err
	}
	listed, listTime, err := listAll(base, "Users")
	if err != nil || listed != *n {
		return fmt.Errorf("target listing baseline: %d users, %v", listed, err)
	}
	listWhat := "GET /Users"
	if *groups > 0 {
		// a full reconcile lists the groups too, with their members
		listedGroups, groupTime, err := listAll(base, "Groups")
		if err != nil || listedGroups != *groups+1 {
			return fmt.Errorf("target listing baseline: %d groups, %v", listedGroups, err)
		}
		listTime += groupTime
		listWhat = "GET /Users and /Groups"
	}
	if err := run("full reconcile", *n, 0, "--full"); err != nil {
		return err
	}
	full := rows[len(rows)-1]
	daemonRow, err := daemonFullReconcile(tb, bin, cfg, *n)
	if err != nil {
		return fmt.Errorf("full reconcile in the daemon: %w", err)
	}
	daemonLS, err := ldapsearch()
	if err != nil {
		return fmt.Errorf("ldapsearch baseline: %w", err)
	}
	rows = append(rows, row{name: "full reconcile, in `scimsync run`", users: *n, wall: daemonRow.wall, rssKiB: daemonRow.rssKiB,
		requests: daemonRow.requests, writes: daemonRow.writes, mode: daemonRow.mode, ldap: daemonLS})

	fmt.Printf("scimsync sync: %d users in slapd -> scimsync serve on loopback, target.concurrency %d\n", *n, *conc)
	if *groups > 0 {
		fmt.Printf("and %d groups of %d members plus one of %d (groups.nesting flatten, batches of 100)\n", *groups, *groupSize, min(*bigGroup, *n))
	}
	if pinned {
		fmt.Printf("CPUs: the target alone on CPU %s; the sync, slapd, ldapsearch and the load generator on the others (-pin=false: all share every CPU)\n", targetCPU)
	} else {
		fmt.Printf("CPUs: the target, the sync, slapd and the load generator share every CPU (not pinned)\n")
	}
	fmt.Printf("baselines measured in this run: ldapsearch -E pr=1000/noprompt of the same entries before each row;\n")
	fmt.Printf("the target's raw create rate: the %d user documents of the sync's dry-run plan (%d bytes each on average), POSTed by %d clients into a fresh scimsync serve,\n",
		rawN, bodyBytes/max(rawN, 1), *conc)
	fmt.Printf("measured before and after the initial sync: %.0f and %.0f users/s; the faster, %.0f users/s (p50 %s, p99 %s), is the baseline\n\n",
		rawStats[0].rate(), rawStats[1].rate(), rawStat.rate(), rawStat.p(0.5).Round(time.Microsecond), rawStat.p(0.99).Round(time.Microsecond))
	fmt.Printf("| run | mode | wall | users/s | peak RSS | target requests | writes | ldapsearch | wall / ldapsearch |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %.0f | %d MiB | %d | %d | %s | %.2fx |\n", r.name, r.mode, r.wall.Round(time.Millisecond),
			float64(r.users)/r.wall.Seconds(), r.rssKiB/1024, r.requests, r.writes, r.ldap.Round(time.Millisecond),
			r.wall.Seconds()/r.ldap.Seconds())
	}
	fmt.Printf("(the daemon row: `scimsync sync --full` asks a running `scimsync run`, started with the packaged unit's GOMEMLIMIT=1800MiB;\n")
	fmt.Printf("its peak RSS is the daemon's VmHWM, reset just before the run; the daemon held %.0f MiB before the run and %.0f MiB after it, %.0f MiB of them file pages)\n",
		daemonIdleMiB, daemonAfterMiB, daemonAfterFileMiB)
	fmt.Printf("full reconcile: %s = %.2f x (3 x ldapsearch %s + the target's own listing %s, %s in pages of 1000, same run)\n",
		full.wall.Round(time.Millisecond), full.wall.Seconds()/(3*full.ldap.Seconds()+listTime.Seconds()),
		full.ldap.Round(time.Millisecond), listTime.Round(time.Millisecond), listWhat)
	init := rows[0]
	fmt.Printf("\ninitial sync: %.0f users/s over the whole run = %.2f x the target's raw create rate at the same concurrency\n",
		float64(init.users)/init.wall.Seconds(), float64(init.users)/init.wall.Seconds()/rawStat.rate())
	for _, ph := range init.phases {
		switch ph.Name {
		case "users":
			fmt.Printf("  users phase: %d users created in %.1fs = %.0f users/s = %.2f x the raw create rate\n",
				ph.Changes, ph.Seconds, float64(ph.Changes)/ph.Seconds, float64(ph.Changes)/ph.Seconds/rawStat.rate())
		case "groups":
			fmt.Printf("  groups phase: %d groups created with their %d memberships in %.1fs\n",
				ph.Changes, *groups*(*groupSize)+min(*bigGroup, *n), ph.Seconds)
		}
	}
	fmt.Printf("  planning and recording: the rest, %.1fs\n", init.wall.Seconds()-phaseSeconds(init.phases))
	return nil
}

// The daemon's resident memory before its full reconcile and after it (of which file pages,
// mostly the state file's), for the table's note.
var daemonIdleMiB, daemonAfterMiB, daemonAfterFileMiB float64

// daemonFullReconcile starts `scimsync run` on the sync's configuration and state (with an
// admin listener, a schedule that does not fire, and the packaged unit's GOMEMLIMIT), has the
// CLI ask it for a full reconcile, and reports the run with the daemon's peak RSS.
func daemonFullReconcile(tb *benchTB, bin, cfg string, n int) (syncMeasure, error) {
	raw, err := os.ReadFile(cfg)
	if err != nil {
		return syncMeasure{}, err
	}
	adminAddr := freeAddr()
	text := strings.Replace(string(raw), "sync:\n", "sync:\n  schedule: \"@every 24h\"\n  run_on_start: false\n", 1)
	text += fmt.Sprintf("admin:\n  listen: %s\n  token: bench-admin-token-0123456789abcdef\n", adminAddr)
	dcfg := filepath.Join(filepath.Dir(cfg), "daemon.yaml")
	if err := os.WriteFile(dcfg, []byte(text), 0o600); err != nil {
		return syncMeasure{}, err
	}
	fmt.Fprintf(os.Stderr, "bench sync: full reconcile in the daemon\n")
	cmd := exec.Command(bin, "run", "--config", dcfg)
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=1800MiB")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return syncMeasure{}, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	tb.Cleanup(stop)
	defer stop()
	ready := false
wait:
	for range 600 { // at most 60 s
		if code, err := call("GET", "http://"+adminAddr+"/readyz", nil); err == nil && code == 200 {
			ready = true
			break
		}
		select {
		case <-exited:
			break wait
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !ready {
		return syncMeasure{}, errors.New("scimsync run did not become ready")
	}
	// the row's peak is the run's: VmHWM is reset to the current RSS (Linux clear_refs 5)
	daemonIdleMiB = procStatusMiB(cmd.Process.Pid, "VmRSS")
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", cmd.Process.Pid), []byte("5"), 0); err != nil {
		return syncMeasure{}, fmt.Errorf("reset the daemon's peak RSS: %w", err)
	}
	m, err := syncProcess(bin, []string{"sync", "--config", dcfg, "--output", "json", "--full"})
	if err != nil {
		return m, err
	}
	if m.writes != 0 || m.mode != "full" {
		return m, fmt.Errorf("%d writes in mode %q, want 0 in a full reconcile of %d users", m.writes, m.mode, n)
	}
	m.rssKiB = int64(procStatusMiB(cmd.Process.Pid, "VmHWM") * 1024)
	daemonAfterMiB = procStatusMiB(cmd.Process.Pid, "VmRSS")
	daemonAfterFileMiB = procStatusMiB(cmd.Process.Pid, "RssFile")
	return m, nil
}

type syncMeasure struct {
	wall             time.Duration
	rssKiB           int64
	requests, writes int64
	mode             string
	phases           []scimsync.PhaseTime
}

// syncProcess runs the binary under GNU time and reads its JSON plan header and result.
func syncProcess(bin string, args []string) (syncMeasure, error) {
	rss, err := os.CreateTemp("", "scimsync-bench-rss-")
	if err != nil {
		return syncMeasure{}, err
	}
	_ = rss.Close()
	defer os.Remove(rss.Name())
	// stdout goes to a file and is decoded after the process ends: decoding a 100,000-item plan
	// while it is written would slow the sync down through the pipe (a real run writes to a
	// file or the journal), and the bench's own parsing is not the sync's time
	report, err := os.CreateTemp("", "scimsync-bench-report-")
	if err != nil {
		return syncMeasure{}, err
	}
	defer os.Remove(report.Name())
	defer report.Close()
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rss.Name(), bin}, args...)...)
	cmd.Stdout, cmd.Stderr = report, os.Stderr
	t0 := time.Now()
	werr := cmd.Run()
	var m syncMeasure
	m.wall = time.Since(t0)
	if werr != nil {
		return m, werr
	}
	if _, err := report.Seek(0, io.SeekStart); err != nil {
		return m, err
	}
	// sync -o json prints one document: the report, with the plan streamed into it
	var rep struct {
		Plan struct {
			Mode string `json:"mode"`
		} `json:"plan"`
		Result *struct {
			Phases []scimsync.PhaseTime `json:"phases"`
		} `json:"result"`
		Requests int64 `json:"scim_requests"`
		Writes   int64 `json:"scim_writes"`
	}
	if err := json.NewDecoder(bufio.NewReaderSize(report, 1<<20)).Decode(&rep); err != nil {
		return m, fmt.Errorf("reading the report: %w", err)
	}
	m.mode, m.requests, m.writes = rep.Plan.Mode, rep.Requests, rep.Writes
	if rep.Result != nil {
		m.phases = rep.Result.Phases
	}
	rawRSS, err := os.ReadFile(rss.Name())
	if err != nil {
		return m, err
	}
	_, err = fmt.Sscan(strings.TrimSpace(string(rawRSS)), &m.rssKiB)
	return m, err
}

// planBodies runs the sync as a dry run and returns the body of every user create its plan holds,
// in plan order.
func planBodies(bin, cfg string) ([][]byte, error) {
	out, err := os.CreateTemp("", "scimsync-bench-plan-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command(bin, "sync", "--config", cfg, "--dry-run", "--output", "json")
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	// exit code 2 is a dry run with changes pending, which is what this one is
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			return nil, fmt.Errorf("dry run: %w", err)
		}
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var rep struct {
		Plan struct {
			Items []struct {
				Kind   string          `json:"kind"`
				Action string          `json:"action"`
				Body   json.RawMessage `json:"body"`
			} `json:"items"`
		} `json:"plan"`
	}
	if err := json.NewDecoder(bufio.NewReaderSize(out, 1<<20)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("reading the dry run's plan: %w", err)
	}
	var bodies [][]byte
	for _, it := range rep.Plan.Items {
		if it.Kind == "User" && it.Action == "create" {
			bodies = append(bodies, it.Body)
		}
	}
	return bodies, nil
}

// listAll pages through the target's resources of one endpoint (Users, Groups) as a plain
// client would, for the baseline of what the target's own listing costs.
func listAll(base, endpoint string) (int, time.Duration, error) {
	t0 := time.Now()
	n := 0
	for start := 1; ; {
		code, raw, err := callBody("GET", fmt.Sprintf("%s/%s?startIndex=%d&count=1000", base, endpoint, start), nil)
		if err != nil || code != 200 {
			return n, 0, fmt.Errorf("list: %d %v", code, err)
		}
		var page struct {
			Resources []json.RawMessage `json:"Resources"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return n, 0, err
		}
		if len(page.Resources) == 0 {
			return n, time.Since(t0), nil
		}
		n += len(page.Resources)
		start += len(page.Resources)
	}
}

// groupsSection is the groups: section of the bench's config, or nothing.
func groupsSection(groups int) string {
	if groups == 0 {
		return ""
	}
	return fmt.Sprintf("groups:\n  base_dn: %s\n  filter: (objectClass=groupOfNames)\n  member_attributes: [member]\n", slapdtest.Groups)
}

func phaseSeconds(phases []scimsync.PhaseTime) float64 {
	total := 0.0
	for _, ph := range phases {
		total += ph.Seconds
	}
	return total
}
