package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/state"
)

func run(id uint64, result string, invalid int, errs ...string) state.Run {
	r := state.Run{ID: id, Result: result, Started: time.Now(), Finished: time.Now(), Errors: errs}
	if invalid >= 0 {
		r.Counts = map[string]int{"invalid": invalid, "unchanged": 5}
	}
	return r
}

func kinds(evs []Event) string {
	var ks []string
	for _, e := range evs {
		ks = append(ks, string(e.Event))
	}
	return strings.Join(ks, ",")
}

func TestEvaluateIsEdgeTriggered(t *testing.T) {
	limit := "deprovisioning limit exceeded: 12 of 40 users; rerun with --allow-deprovision 12"
	tests := []struct {
		name string
		runs []state.Run // newest first
		want string
	}{
		{"first run ok", []state.Run{run(1, "ok", 0)}, ""},
		{"first failure", []state.Run{run(2, "error", -1, "ldap down"), run(1, "ok", 0)}, "failed"},
		{"still failing", []state.Run{run(3, "error", -1, "ldap down"), run(2, "error", -1, "ldap down")}, ""},
		{"failing on the very first run", []state.Run{run(1, "error", -1, "x")}, "failed"},
		{"safety stop", []state.Run{run(2, "stopped", 0, limit), run(1, "ok", 0)}, "stopped"},
		{"same stop again", []state.Run{run(3, "stopped", 0, limit), run(2, "stopped", 0, limit)}, ""},
		{"a different stop", []state.Run{run(3, "stopped", 0, "empty read"), run(2, "stopped", 0, limit)}, "stopped"},
		{"approved", []state.Run{run(4, "ok", 0), run(3, "stopped", 0, limit)}, "recovered"},
		{"recovered from failure", []state.Run{run(4, "ok", 0), run(3, "error", -1, "x")}, "recovered"},
		{"cancelled is not a failure", []state.Run{run(2, "cancelled", 0), run(1, "ok", 0)}, ""},
		{"invalid rises above", []state.Run{run(2, "ok", 3), run(1, "ok", 2)}, "invalid"},
		{"invalid stays above", []state.Run{run(3, "ok", 4), run(2, "ok", 3)}, ""},
		{"invalid above after a failed read", []state.Run{run(3, "ok", 4), run(2, "error", -1, "x"), run(1, "ok", 3)}, "recovered"},
		{"invalid at the threshold", []state.Run{run(2, "ok", 2), run(1, "ok", 0)}, ""},
		{"stop and invalid together", []state.Run{run(2, "stopped", 9, limit), run(1, "ok", 0)}, "stopped,invalid"},
	}
	for _, tt := range tests {
		evs := Evaluate(tt.runs, 2)
		if got := kinds(evs); got != tt.want {
			t.Errorf("%s: events %q, want %q", tt.name, got, tt.want)
		}
		for _, e := range evs {
			if e.Text == "" || e.FormatVersion != FormatVersion || e.RunID != tt.runs[0].ID || e.Errors == nil || e.Counts == nil {
				t.Errorf("%s: incomplete event %+v", tt.name, e)
			}
		}
	}
}

func TestEvaluateBoundsErrors(t *testing.T) {
	errs := make([]string, 500)
	for i := range errs {
		errs[i] = "user: HTTP 400"
	}
	evs := Evaluate([]state.Run{run(1, "error", 0, errs...)}, 0)
	if len(evs) != 1 || len(evs[0].Errors) != maxErrors {
		t.Fatalf("events %+v", evs)
	}
}

// receiver is a real HTTP server standing in for Slack: it records every body it accepts and
// answers with the statuses queued in fail first.
type receiver struct {
	srv    *httptest.Server
	mu     gosync.Mutex
	bodies []map[string]any
	fail   []int
	calls  atomic.Int32
}

func newReceiver(t *testing.T, fail ...int) *receiver {
	r := &receiver{fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.fail) > 0 {
			code := r.fail[0]
			r.fail = r.fail[1:]
			w.WriteHeader(code)
			return
		}
		raw, _ := io.ReadAll(req.Body)
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil || req.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.bodies = append(r.bodies, m)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) received() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.bodies...)
}

func newNotifier(t *testing.T, cfg Config, reg prometheus.Registerer) *Notifier {
	t.Helper()
	var sent *prometheus.CounterVec
	if reg != nil {
		sent = NewCounter()
		reg.MustRegister(sent)
	}
	n, err := New(cfg, "test", zaptest.NewLogger(t), sent)
	if err != nil {
		t.Fatal(err)
	}
	n.backoff = 10 * time.Millisecond
	return n
}

func TestSendRetriesThenDelivers(t *testing.T) {
	rcv := newReceiver(t, 503, 500)
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Webhooks = []WebhookConfig{{Name: "slack", URL: config.NewSecret(rcv.srv.URL + "/services/T000/B000/XXXXSECRET")}}
	n := newNotifier(t, cfg, reg)
	ev := Evaluate([]state.Run{run(2, "stopped", 0, "deprovisioning limit exceeded"), run(1, "ok", 0)}, 0)[0]
	if err := n.Send(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := rcv.received()
	if len(got) != 1 || got[0]["event"] != "stopped" || !strings.Contains(got[0]["text"].(string), "safety rule") || rcv.calls.Load() != 3 {
		t.Fatalf("received %v after %d calls", got, rcv.calls.Load())
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues("stopped", "slack", "sent")); v != 1 {
		t.Fatalf("sent counter %v", v)
	}
}

func TestSendGivesUpBoundedAndNeverShowsTheURL(t *testing.T) {
	rcv := newReceiver(t, 500, 500, 500, 500, 500, 500)
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.MaxRetries = 2
	cfg.Webhooks = []WebhookConfig{
		{URL: config.NewSecret(rcv.srv.URL + "/hooks/SECRETPATH")},
		{Name: "down", URL: config.NewSecret("http://127.0.0.1:1/hooks/SECRETPATH2")},
		{Name: "only-recovered", URL: config.NewSecret(rcv.srv.URL + "/r/SECRETPATH3"), Events: []Kind{Recovered}},
	}
	n := newNotifier(t, cfg, reg)
	err := n.Send(context.Background(), Event{Event: Failed, Text: "x"})
	if err == nil || strings.Contains(err.Error(), "SECRETPATH") || !strings.Contains(err.Error(), "gave up after 3 attempt(s)") {
		t.Fatalf("error %v", err)
	}
	if rcv.calls.Load() != 3 {
		t.Fatalf("%d calls to the failing receiver, want 3 (and none for the recovered-only hook)", rcv.calls.Load())
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues("failed", "webhooks[0]", "failed")); v != 1 {
		t.Fatalf("failed counter %v", v)
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues("failed", "down", "failed")); v != 1 {
		t.Fatalf("failed counter for the unreachable hook %v", v)
	}
}

func TestSendDoesNotRetryA400(t *testing.T) {
	rcv := newReceiver(t, 400, 400)
	cfg := DefaultConfig()
	cfg.Webhooks = []WebhookConfig{{URL: config.NewSecret(rcv.srv.URL)}}
	n := newNotifier(t, cfg, nil)
	if err := n.Send(context.Background(), Event{Event: Failed}); err == nil || rcv.calls.Load() != 1 {
		t.Fatalf("err %v after %d calls", err, rcv.calls.Load())
	}
}

func TestWebhookURLFromFile(t *testing.T) {
	rcv := newReceiver(t)
	file := filepath.Join(t.TempDir(), "slack.secret")
	if err := os.WriteFile(file, []byte(rcv.srv.URL+"/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Webhooks = []WebhookConfig{{URLFile: file}}
	n := newNotifier(t, cfg, nil)
	n.Go(context.Background(), []Event{{Event: Recovered, Text: "back"}})
	if err := n.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rcv.received(); len(got) != 1 || got[0]["text"] != "back" {
		t.Fatalf("received %v", got)
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	c.InvalidThreshold, c.MaxRetries = -1, 99
	c.Webhooks = []WebhookConfig{
		{URL: config.NewSecret("ftp://x/SECRET"), Events: []Kind{"faild"}},
		{},
		{URL: config.NewSecret("https://h/x"), URLFile: "/f"},
	}
	ps := c.Validate()
	got := ps.Error()
	for _, want := range []string{"invalid_threshold", "max_retries", "webhooks[0].url: want an http", `webhooks[0].events[0]: unknown event "faild"`,
		`did you mean "failed"`, "webhooks[1].url: set url", "webhooks[2].url_file"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in %s", want, got)
		}
	}
	if strings.Contains(got, "SECRET") {
		t.Errorf("problems show the URL: %s", got)
	}
}

func TestEventTextIsEscapedForSlackAndTeams(t *testing.T) {
	hostile := `create user "<!channel>": HTTP 409 <https://evil.example|click here> & more é` + strings.Repeat("é", 300)
	runs := []state.Run{{ID: 2, Result: "error", Errors: []string{hostile}}, {ID: 1, Result: "ok"}}
	evs := Evaluate(runs, 0)
	if len(evs) != 1 {
		t.Fatalf("events %v", evs)
	}
	e := evs[0]
	if strings.ContainsAny(e.Text, "<>") || !strings.Contains(e.Text, "&lt;!channel&gt;") ||
		!strings.Contains(e.Text, "&lt;https://evil.example|click here&gt; &amp; more") || !utf8.ValidString(e.Text) {
		t.Fatalf("text %q", e.Text)
	}
	if e.Errors[0] != hostile {
		t.Fatalf("the structured error is not the raw one: %q", e.Errors[0])
	}
}
