// Package notify sends scimsync's alerts: a failed run, a safety stop, a rise of invalid users
// above a threshold, and the recovery after any of them. Events are found by comparing the run
// just recorded with the ones before it, so a condition that lasts is announced once, not at
// every scheduled run. Each event is a JSON POST to the configured webhooks; its "text" field
// is what Slack and Microsoft Teams incoming webhooks display.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/scimsync/scimsync/config"
	"github.com/scimsync/scimsync/state"
)

// Kind is what happened.
type Kind string

// The events a webhook can subscribe to.
const (
	Failed    Kind = "failed"    // a run ended in error (directory, target or some writes failed)
	Stopped   Kind = "stopped"   // a safety rule held the run back (deprovisioning limit, empty read)
	Invalid   Kind = "invalid"   // more invalid directory users than notify.invalid_threshold
	Recovered Kind = "recovered" // a run succeeded after a failed or stopped one
)

// Kinds lists every event, in the order the docs give them.
var Kinds = []Kind{Failed, Stopped, Invalid, Recovered}

// FormatVersion of the webhook payload.
const FormatVersion = 1

// Config is the `notify:` section.
type Config struct {
	Webhooks         []WebhookConfig `yaml:"webhooks"`
	InvalidThreshold int             `yaml:"invalid_threshold"` // "invalid" fires when a run finds more than this
	Timeout          config.Duration `yaml:"timeout"`           // per attempt
	MaxRetries       int             `yaml:"max_retries"`       // after the first attempt, on network errors, 429 and 5xx
}

// WebhookConfig is one receiver. Its URL is a secret: a Slack or Teams webhook URL carries the
// credential in its path, so it is never logged, printed or put in an error.
type WebhookConfig struct {
	Name    string        `yaml:"name"` // for logs and metrics; default "webhooks[i]"
	URL     config.Secret `yaml:"url"`
	URLFile string        `yaml:"url_file"`
	Events  []Kind        `yaml:"events"` // default: all
}

// DefaultConfig is the section's defaults: no webhook, any invalid user counts, 10 s per
// attempt, 3 retries.
func DefaultConfig() Config {
	return Config{Timeout: config.Duration(10 * time.Second), MaxRetries: 3}
}

// Validate reports every problem in the section.
func (c Config) Validate() config.Problems {
	var ps config.Problems
	if c.InvalidThreshold < 0 {
		ps.Add("invalid_threshold", "must be 0 or more")
	}
	if c.Timeout.D() <= 0 {
		ps.Add("timeout", "must be positive")
	}
	if c.MaxRetries < 0 || c.MaxRetries > 10 {
		ps.Add("max_retries", "must be between 0 and 10")
	}
	names := map[string]bool{}
	for i, w := range c.Webhooks {
		p := fmt.Sprintf("webhooks[%d]", i)
		switch {
		case w.URL.IsZero() && w.URLFile == "":
			ps.Add(p+".url", "set url (e.g. ${SLACK_WEBHOOK_URL}) or url_file")
		case !w.URL.IsZero() && w.URLFile != "":
			ps.Add(p+".url_file", "set url or url_file, not both")
		case !w.URL.IsZero():
			if err := checkURL(w.URL.Reveal()); err != nil {
				ps.Add(p+".url", "%v", err)
			}
		}
		if w.Name != "" {
			if names[w.Name] {
				ps.Add(p+".name", "duplicate webhook name %q", w.Name)
			}
			names[w.Name] = true
		}
		known := make([]string, len(Kinds))
		for i, k := range Kinds {
			known[i] = string(k)
		}
		for j, e := range w.Events {
			if !slices.Contains(Kinds, e) {
				msg := fmt.Sprintf("unknown event %q: want %s", e, strings.Join(known, ", "))
				if s := config.Suggest(string(e), known); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				ps.Add(fmt.Sprintf("%s.events[%d]", p, j), "%s", msg)
			}
		}
	}
	return ps
}

// checkURL accepts http and https URLs; the error never contains the URL itself.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("want an http:// or https:// URL")
	}
	return nil
}

// SecretFiles lists the url_file keys, for checks of the files themselves.
func (c Config) SecretFiles() []config.SecretFile {
	var out []config.SecretFile
	for i, w := range c.Webhooks {
		if w.URLFile != "" {
			out = append(out, config.SecretFile{Key: fmt.Sprintf("notify.webhooks[%d].url_file", i), Path: w.URLFile})
		}
	}
	return out
}

// Event is the webhook payload. Text is escaped for Slack and Teams (&, <, > as &amp;, &lt;,
// &gt;); every other field is raw.
type Event struct {
	FormatVersion int            `json:"format_version"`
	Event         Kind           `json:"event"`
	Text          string         `json:"text"` // one line for people: Slack and Teams show this field
	Time          time.Time      `json:"time"`
	Host          string         `json:"host"`
	RunID         uint64         `json:"run_id"`
	Result        string         `json:"result"`
	Counts        map[string]int `json:"counts"`
	Errors        []string       `json:"errors"`
	Invalid       int            `json:"invalid"`
}

// maxErrors bounds the errors an event carries: a run where 10,000 writes failed must not
// post a 2 MB message.
const maxErrors = 10

// Evaluate returns the events that runs (newest first, runs[0] being the run just recorded)
// call for. Conditions are edge-triggered: a run that fails like the one before it, or is
// stopped for the same reason, announces nothing new.
func Evaluate(runs []state.Run, invalidThreshold int) []Event {
	if len(runs) == 0 {
		return nil
	}
	cur := runs[0]
	var prev *state.Run
	if len(runs) > 1 {
		prev = &runs[1]
	}
	host, _ := os.Hostname()
	ev := func(k Kind, text string) Event {
		e := Event{FormatVersion: FormatVersion, Event: k, Text: escapeText(text), Time: cur.Finished, Host: host, RunID: cur.ID,
			Result: cur.Result, Counts: map[string]int{}, Errors: []string{}, Invalid: cur.Counts["invalid"]}
		if e.Time.IsZero() {
			e.Time = cur.Started
		}
		for k, v := range cur.Counts {
			e.Counts[k] = v
		}
		e.Errors = append(e.Errors, cur.Errors[:min(len(cur.Errors), maxErrors)]...)
		return e
	}
	first := func(r state.Run) string {
		if len(r.Errors) == 0 {
			return ""
		}
		return r.Errors[0]
	}
	var out []Event
	switch cur.Result {
	case "error":
		if prev == nil || prev.Result != "error" {
			text := fmt.Sprintf("scimsync on %s: run %d failed", host, cur.ID)
			if len(cur.Errors) > 0 {
				text += fmt.Sprintf(" (%d error(s)); first: %s", len(cur.Errors), clip(cur.Errors[0], 300))
			}
			out = append(out, ev(Failed, text))
		}
	case "stopped":
		if prev == nil || prev.Result != "stopped" || first(*prev) != first(cur) {
			out = append(out, ev(Stopped, fmt.Sprintf("scimsync on %s: run %d stopped by a safety rule: %s", host, cur.ID, clip(first(cur), 400))))
		}
	case "ok":
		if prev != nil && (prev.Result == "error" || prev.Result == "stopped") {
			out = append(out, ev(Recovered, fmt.Sprintf("scimsync on %s: run %d succeeded after run %d %s", host, cur.ID, prev.ID, prev.Result)))
		}
	}
	if n, planned := cur.Counts["invalid"]; planned && n > invalidThreshold {
		// the last run before this one that planned (a failed read records no counts)
		before := -1
		for _, r := range runs[1:] {
			if m, ok := r.Counts["invalid"]; ok {
				before = m
				break
			}
		}
		if before < 0 || before <= invalidThreshold {
			out = append(out, ev(Invalid, fmt.Sprintf("scimsync on %s: run %d found %d invalid directory users (threshold %d); `scimsync sync --dry-run` lists them with the attribute and rule",
				host, cur.ID, n, invalidThreshold)))
		}
	}
	return out
}

// clip cuts s to at most n bytes, at a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// textEscaper escapes the three characters Slack gives meaning to in a message's text (and
// Teams renders as HTML): a run error quoting a user named "<!channel>" or
// "<https://evil.example|click here>" would otherwise ping everyone or show a link.
var textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeText makes text display as written in Slack and Teams; the structured fields
// (errors, counts) carry the raw values for programs.
func escapeText(s string) string { return textEscaper.Replace(s) }

type hook struct {
	name   string
	url    string
	host   string // safe to log: the credential of Slack/Teams URLs is in the path
	events map[Kind]bool
}

// Notifier delivers events to the configured webhooks.
type Notifier struct {
	hooks     []hook
	client    *http.Client
	retries   int
	backoff   time.Duration // first retry wait; doubles, with jitter
	userAgent string
	log       *zap.Logger
	sent      *prometheus.CounterVec
	wg        gosync.WaitGroup
}

// NewCounter is scimsync_notifications_total{event, webhook, outcome}, for New. The daemon
// registers it once and hands it to every notifier it builds (one per config reload).
func NewCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scimsync_notifications_total",
		Help: "Webhook notifications by event, webhook name and outcome (sent, failed)."}, []string{"event", "webhook", "outcome"})
}

// New resolves the webhook URLs and builds a notifier that counts in sent (nil: not counted).
func New(cfg Config, version string, log *zap.Logger, sent *prometheus.CounterVec) (*Notifier, error) {
	n := &Notifier{client: &http.Client{Timeout: cfg.Timeout.D(),
		// a redirect would re-send the event somewhere nobody configured
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		retries: cfg.MaxRetries, backoff: time.Second, userAgent: "scimsync/" + version, log: log.Named("notify"), sent: sent}
	for i, w := range cfg.Webhooks {
		name := w.Name
		if name == "" {
			name = fmt.Sprintf("webhooks[%d]", i)
		}
		sec, err := config.ResolveSecret(w.URL, w.URLFile)
		if err != nil {
			return nil, fmt.Errorf("notify: %s: %w", name, err)
		}
		if err := checkURL(sec.Reveal()); err != nil {
			return nil, fmt.Errorf("notify: %s: %w", name, err)
		}
		u, _ := url.Parse(sec.Reveal())
		h := hook{name: name, url: sec.Reveal(), host: u.Host, events: map[Kind]bool{}}
		events := w.Events
		if len(events) == 0 {
			events = Kinds
		}
		for _, e := range events {
			h.events[e] = true
		}
		n.hooks = append(n.hooks, h)
	}
	return n, nil
}

// Enabled reports whether any webhook is configured.
func (n *Notifier) Enabled() bool { return n != nil && len(n.hooks) > 0 }

// Send delivers ev to every webhook subscribed to its kind and waits for the outcome. Failures
// are logged and counted; the returned error joins them (without any URL).
func (n *Notifier) Send(ctx context.Context, ev Event) error {
	if !n.Enabled() {
		return nil
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("notify: encode %s event: %w", ev.Event, err)
	}
	var errs []error
	for _, h := range n.hooks {
		if !h.events[ev.Event] {
			continue
		}
		err := n.deliver(ctx, h, body)
		outcome := "sent"
		if err != nil {
			outcome = "failed"
			errs = append(errs, fmt.Errorf("notify: %s event to %s: %w", ev.Event, h.name, err))
			n.log.Error("notification failed", zap.String("event", string(ev.Event)), zap.String("webhook", h.name),
				zap.String("host", h.host), zap.Uint64("run", ev.RunID), zap.Error(err))
		} else {
			n.log.Info("notification sent", zap.String("event", string(ev.Event)), zap.String("webhook", h.name),
				zap.String("host", h.host), zap.Uint64("run", ev.RunID))
		}
		if n.sent != nil {
			n.sent.WithLabelValues(string(ev.Event), h.name, outcome).Inc()
		}
	}
	return errors.Join(errs...)
}

// Go sends in the background, so a slow receiver never delays the scheduler; Wait collects.
func (n *Notifier) Go(ctx context.Context, events []Event) {
	if !n.Enabled() || len(events) == 0 {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for _, ev := range events {
			_ = n.Send(ctx, ev) // logged and counted in Send
		}
	}()
}

// Wait blocks until background sends finish or ctx ends.
func (n *Notifier) Wait(ctx context.Context) error {
	if n == nil {
		return nil
	}
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("notify: pending notifications: %w", ctx.Err())
	}
}

// errStatus is a non-2xx answer.
type errStatus struct {
	code       int
	retryAfter time.Duration
}

func (e errStatus) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

func (n *Notifier) deliver(ctx context.Context, h hook, body []byte) error {
	var last error
	for attempt := 0; attempt <= n.retries; attempt++ {
		if attempt > 0 {
			wait := n.backoff << (attempt - 1)
			wait = wait/2 + rand.N(wait/2+1)
			var st errStatus
			if errors.As(last, &st) && st.retryAfter > 0 {
				wait = min(st.retryAfter, time.Minute)
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return fmt.Errorf("gave up after %d attempt(s): %w (last: %w)", attempt, ctx.Err(), last)
			}
		}
		last = n.post(ctx, h, body)
		if last == nil {
			return nil
		}
		var st errStatus
		if errors.As(last, &st) && st.code != http.StatusTooManyRequests && st.code < 500 {
			return last // a 4xx other than 429 will not get better by asking again
		}
	}
	return fmt.Errorf("gave up after %d attempt(s): %w", n.retries+1, last)
}

func (n *Notifier) post(ctx context.Context, h hook, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("cannot build the request") // the error would quote the URL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.userAgent)
	resp, err := n.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error quotes the URL, which holds the credential
		}
		return fmt.Errorf("POST to %s: %w", h.host, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	st := errStatus{code: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		st.retryAfter = time.Duration(s) * time.Second
	}
	return st
}
