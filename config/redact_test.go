package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	tok = "tgt-9f8e7d6c5b4a-<&>\"quoted\""
	pw  = "ldap pass/word+1"
)

func TestRedactEveryEncoding(t *testing.T) {
	r := NewRedactor(tok, pw, "", "   ")
	for _, tt := range []struct{ name, in string }{
		{"raw", "Authorization: Bearer " + tok},
		{"json", `{"detail":"` + jsonEscape(tok) + `"}`},
		{"json without html escaping", `"tgt-9f8e7d6c5b4a-<&>\"quoted\""`},
		{"query", "https://x/?t=" + url.QueryEscape(pw)},
		{"path", "https://x/" + url.PathEscape(pw)},
		{"html", "<p>tgt-9f8e7d6c5b4a-&lt;&amp;&gt;&#34;quoted&#34;</p>"},
		{"base64", "Basic " + base64.StdEncoding.EncodeToString([]byte(pw))},
		{"base64url", base64.RawURLEncoding.EncodeToString([]byte(tok))},
		{"twice", tok + tok + "x" + pw},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := r.Redact(tt.in)
			if strings.Contains(out, tok) || strings.Contains(out, pw) || !strings.Contains(out, Redacted) {
				t.Fatalf("%q -> %q", tt.in, out)
			}
		})
	}
	if got := r.Redact("nothing to hide   here"); got != "nothing to hide   here" {
		t.Fatalf("blank secrets must not be redacted: %q", got)
	}
	var nilR *Redactor
	if nilR.Redact(tok) != tok || !nilR.Empty() || nilR.Error(nil) != nil {
		t.Fatal("a nil Redactor passes text through")
	}
}

func TestRedactLongestSecretFirst(t *testing.T) {
	r := NewRedactor("abc", "abcdef")
	if got := r.Redact("xabcdefx"); got != "x"+Redacted+"x" {
		t.Fatalf("got %q", got)
	}
}

// A replacement can complete a secret that overlaps the marker's last character.
func TestRedactDoesNotCompleteASecret(t *testing.T) {
	r := NewRedactor("]z", "secret")
	if got := r.Redact("secretz"); strings.Contains(got, "]z") {
		t.Fatalf("got %q", got)
	}
}

func TestRedactError(t *testing.T) {
	sentinel := errors.New("sentinel")
	r := NewRedactor(tok)
	err := r.Error(fmt.Errorf("echoed %s: %w", tok, sentinel))
	if strings.Contains(err.Error(), tok) || !errors.Is(err, sentinel) {
		t.Fatalf("%v", err)
	}
	if r.Error(sentinel) != sentinel {
		t.Fatal("an error without a secret must stay the same value")
	}
}

func TestRedactConcurrentAdd(t *testing.T) {
	r := NewRedactor()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := fmt.Sprintf("secret-%d-xyz", i)
			r.Add(s)
			if out := r.Redact("a " + s + " b"); strings.Contains(out, s) {
				t.Errorf("%q", out)
			}
		}()
	}
	wg.Wait()
}

type section struct {
	Token     Secret `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	URL       string `yaml:"url"`
	Other     string `yaml:"other_file"` // not beside a secret: a path, not a secret
}

type fileConfig struct {
	Target  section   `yaml:"target"`
	Servers []section `yaml:"servers"`
	Hook    *hook
	ByName  map[string]section `yaml:"by_name"`
	hidden  Secret
}

// hook is a section with a plain string marked secret (a webhook URL carries its credential).
type hook struct {
	URL string `secret:"true"`
}

func TestAddConfigFindsEverySecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("from-file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("not-a-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &fileConfig{
		Target:  section{Token: NewSecret("inline-secret"), URL: "https://user:url-password@h/x", Other: other},
		Servers: []section{{TokenFile: file}, {TokenFile: filepath.Join(dir, "missing")}},
		Hook:    &hook{URL: "https://hooks.example/T000/B000/XXXX"},
		ByName:  map[string]section{"a": {Token: NewSecret("map-secret")}},
		hidden:  NewSecret("unexported"),
	}
	r := NewRedactor()
	err := r.AddConfig(cfg)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "token_file") {
		t.Fatalf("a missing secret file is reported: %v", err)
	}
	text := "inline-secret from-file-secret url-password https://hooks.example/T000/B000/XXXX map-secret"
	if got := r.Redact(text); strings.Count(got, Redacted) != 5 {
		t.Fatalf("got %q", got)
	}
	if got := r.Redact("not-a-secret unexported"); got != "not-a-secret unexported" {
		t.Fatalf("over-redacted: %q", got)
	}
}

type stringer struct{}

func (stringer) String() string { return "stringer says " + tok }

type objMarshaler struct{}

func (objMarshaler) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("inner", tok)
	enc.AddInt("n", 3)
	return nil
}

// TestRedactCoreEveryField logs the secret through every kind of field and both the log call
// and With, and greps the encoded output.
func TestRedactCoreEveryField(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
			if format == "console" {
				enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
			}
			core := zapcore.NewCore(enc, zapcore.AddSync(&buf), zapcore.DebugLevel)
			log := zap.New(RedactCore(core, NewRedactor(tok)), zap.AddStacktrace(zapcore.ErrorLevel))
			log = log.With(zap.String("with", tok)).Named("n").With(zap.Any("withmap", map[string]string{"k": tok}))
			log.Error("message "+tok,
				zap.String("s", tok),
				zap.ByteString("b", []byte(tok)),
				zap.Error(fmt.Errorf("wrapped: %w", errors.New(tok))),
				zap.Errors("errs", []error{errors.New(tok)}),
				zap.Stringer("st", stringer{}),
				zap.Any("map", map[string]any{"nested": []any{tok}}),
				zap.Object("obj", objMarshaler{}),
				zap.Strings("arr", []string{"a", tok}),
				zap.Inline(objMarshaler{}),
				zap.Int("count", 7),
				zap.Duration("took", time.Second),
				zap.Namespace("ns"),
				zap.String("after", "kept"),
			)
			out := buf.String()
			for _, leak := range []string{tok, jsonEscape(tok), "9f8e7d6c5b4a"} {
				if strings.Contains(out, leak) {
					t.Fatalf("secret %q in output:\n%s", leak, out)
				}
			}
			for _, kept := range []string{"count", "7", "kept", "took", Redacted} {
				if !strings.Contains(out, kept) {
					t.Fatalf("%q missing from output:\n%s", kept, out)
				}
			}
		})
	}
}

// TestRedactCoreKeepsSampling: the wrapper inside or outside a sampler must not defeat it
// (a wrapper that adds itself to the entry would bypass an inner sampler's Check).
func TestRedactCoreKeepsSampling(t *testing.T) {
	r := NewRedactor(tok)
	for _, tt := range []struct {
		name string
		wrap func(zapcore.Core) zapcore.Core
	}{
		{"sampler inside", func(c zapcore.Core) zapcore.Core {
			return RedactCore(zapcore.NewSamplerWithOptions(c, time.Minute, 3, 0), r)
		}},
		{"sampler outside", func(c zapcore.Core) zapcore.Core {
			return zapcore.NewSamplerWithOptions(RedactCore(c, r), time.Minute, 3, 0)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.InfoLevel)
			log := zap.New(tt.wrap(core))
			for range 10 {
				log.Info("same message", zap.String("token", tok))
			}
			log.Debug("below the level " + tok)
			if n := strings.Count(buf.String(), "\n"); n != 3 {
				t.Fatalf("%d lines written, want 3 sampled:\n%s", n, buf.String())
			}
			if strings.Contains(buf.String(), tok) {
				t.Fatalf("leak:\n%s", buf.String())
			}
		})
	}
}

func TestRedactCoreLevel(t *testing.T) {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&bytes.Buffer{}), zapcore.WarnLevel)
	rc := RedactCore(core, NewRedactor(tok))
	if zapcore.LevelOf(rc) != zapcore.WarnLevel || rc.Enabled(zapcore.InfoLevel) {
		t.Fatalf("level %v", zapcore.LevelOf(rc))
	}
	// Write directly, as a core above this one may
	var buf bytes.Buffer
	rc = RedactCore(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.DebugLevel), NewRedactor(tok))
	if err := rc.Write(zapcore.Entry{Message: tok}, []zapcore.Field{zap.String("k", tok)}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), tok) {
		t.Fatal(buf.String())
	}
}

func jsonEscape(s string) string {
	return strings.NewReplacer(`"`, `\"`, "<", `\u003c`, ">", `\u003e`, "&", `\u0026`).Replace(s)
}

func FuzzRedact(f *testing.F) {
	f.Add("s3cr3t-token", "before s3cr3t-token after")
	f.Add("]x", "[redacted]x]x")
	f.Add("ü\x00\"", "\"ü\\u0000\\\"\"")
	f.Fuzz(func(t *testing.T, secret, text string) {
		r := NewRedactor(secret)
		out := r.Redact(text + secret + text)
		if strings.TrimSpace(secret) == "" || strings.Contains(Redacted, secret) {
			return
		}
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q survives in %q", secret, out)
		}
	})
}

func TestMaskTail(t *testing.T) {
	const tok = "s3cr3t-token-abcdef0123456789"
	r := NewRedactor(tok, "short1")
	for _, tt := range []struct{ in, want string }{
		{"invalid token " + tok[:20] + "...", "invalid token " + Redacted + "..."},
		{"invalid token " + tok[:8] + "…", "invalid token " + Redacted + "…"},
		{"invalid token " + tok[:7], "invalid token " + tok[:7]},                     // too short to tell from a word
		{"token " + tok[:20] + " was refused", "token " + tok[:20] + " was refused"}, // not at the end: a whole secret is Redact's job
		{tok[:len(tok)-1], Redacted},
		{"short1 and short", "short1 and short"},
		{"", ""},
		{"...", "..."},
	} {
		if got := r.MaskTail(tt.in); got != tt.want {
			t.Errorf("MaskTail(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	var none *Redactor
	if got := none.MaskTail("abc"); got != "abc" {
		t.Errorf("nil Redactor: %q", got)
	}
}

func FuzzMaskTail(f *testing.F) {
	const tok = "s3cr3t-token-abcdef0123456789"
	r := NewRedactor(tok)
	f.Add("invalid token s3cr3t-token-ab...", 5)
	f.Add(strings.Repeat("s3cr3t-", 1000), 3)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = max(0, min(n, len(tok)-1)) // a proper start: a whole secret is Redact's job
		in := s + tok[:n]
		out := r.MaskTail(in)
		if n >= minSecretPrefix && strings.HasSuffix(out, tok[:n]) {
			t.Fatalf("MaskTail(%q) = %q keeps %d bytes of the secret", in, out, n)
		}
		if out == in {
			return
		}
		i := strings.LastIndex(out, Redacted)
		if i < 0 || !strings.HasPrefix(in, out[:i]) || !strings.HasSuffix(in, out[i+len(Redacted):]) ||
			strings.Trim(out[i+len(Redacted):], " .…") != "" {
			t.Fatalf("MaskTail(%q) = %q changed more than the tail", in, out)
		}
	})
}
