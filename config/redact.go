package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Redacted is what Redactor puts where a secret was. It differs from Secret's "<secret>" so a
// reader can tell a value that was never revealed from one caught in text on its way out.
const Redacted = "[redacted]"

// Redactor replaces every known secret value in text with Redacted. It is the last line of
// defence for text that came from outside the program (a target echoing our Authorization
// header in an error body, a server quoting a request): the Secret type already keeps values
// the program itself formats from printing. One Redactor is filled from every resolved secret
// and shared by the logger, the SCIM client's errors and whatever stores run errors.
//
// It is safe for concurrent use; Add may be called while other goroutines redact.
type Redactor struct {
	mu      sync.Mutex
	secrets map[string]bool
	rep     atomic.Pointer[strings.Replacer]
}

// NewRedactor returns a Redactor that knows secrets.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add teaches r more secret values. Empty and all-blank values are ignored: replacing every
// space in the output would hide everything and protect nothing.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.secrets == nil {
		r.secrets = map[string]bool{}
	}
	changed := false
	for _, s := range secrets {
		if strings.TrimSpace(s) == "" || r.secrets[s] {
			continue
		}
		r.secrets[s] = true
		changed = true
	}
	if !changed {
		return
	}
	// Every form in which a secret may come back: as sent, and escaped the way JSON, URLs and
	// HTML escape it (an echoing server may quote it in any of them), and base64.
	forms := map[string]bool{}
	for s := range r.secrets {
		for _, f := range encodings(s) {
			forms[f] = true
		}
	}
	olds := make([]string, 0, len(forms))
	for f := range forms {
		olds = append(olds, f)
	}
	// strings.Replacer tries pairs in argument order at each position: longest first, so a
	// secret that contains another is replaced whole.
	slices.SortFunc(olds, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	pairs := make([]string, 0, 2*len(olds))
	for _, o := range olds {
		pairs = append(pairs, o, Redacted)
	}
	r.rep.Store(strings.NewReplacer(pairs...))
}

// AddSecret teaches r the values of secrets.
func (r *Redactor) AddSecret(secrets ...Secret) {
	for _, s := range secrets {
		r.Add(s.value)
	}
}

func encodings(s string) []string {
	out := []string{s}
	for _, escHTML := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(escHTML)
		if enc.Encode(s) == nil {
			q := strings.TrimSuffix(b.String(), "\n")
			out = append(out, q[1:len(q)-1])
		}
	}
	out = append(out, url.QueryEscape(s), url.PathEscape(s), html.EscapeString(s),
		base64.StdEncoding.EncodeToString([]byte(s)), base64.RawStdEncoding.EncodeToString([]byte(s)),
		base64.URLEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s)))
	return out
}

// Empty reports whether r knows no secret (a nil Redactor knows none).
func (r *Redactor) Empty() bool { return r == nil || r.rep.Load() == nil }

// Redact returns s with every known secret replaced. A nil Redactor returns s unchanged.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	rep := r.rep.Load()
	if rep == nil {
		return s
	}
	// A replacement can complete a secret that overlaps the marker ("]x" in "<secret>x"):
	// repeat until nothing changes, when no secret is left (the replacer would have changed
	// any occurrence). A secret the marker keeps re-forming ("0[" after a run of zeros, or a
	// secret inside the marker) need not settle: then the whole text is withheld, since a
	// secret must never be shown.
	for range 8 {
		out := rep.Replace(s)
		if out == s {
			return s
		}
		s = out
	}
	if rep.Replace(s) == s {
		return s
	}
	return Redacted
}

// minSecretPrefix is the shortest start of a secret MaskTail hides: shorter ones would match
// ordinary words.
const minSecretPrefix = 8

// MaskTail replaces a start of a known secret, at least minSecretPrefix bytes long, that ends
// s (before any trailing dots, ellipsis or spaces) with Redacted. That is what a server leaves
// when it cuts its echo of a token short ("invalid token abcdef0123…"): Redact only knows whole
// secrets. A nil Redactor returns s unchanged.
func (r *Redactor) MaskTail(s string) string {
	if r.Empty() {
		return s
	}
	body := strings.TrimRight(s, " .…")
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := len(body)
	for secret := range r.secrets {
		// the earliest start i from which the rest of body begins secret (the longest prefix)
		for i := max(0, len(body)-len(secret)+1); i <= len(body)-minSecretPrefix; i++ {
			if body[i] == secret[0] && strings.HasPrefix(secret, body[i:]) {
				cut = min(cut, i)
				break
			}
		}
	}
	if cut == len(body) {
		return s
	}
	return body[:cut] + Redacted + s[len(body):]
}

// Error returns err with its message redacted; errors.Is and errors.As still see the chain.
// An error whose message holds no secret is returned as is, so sentinel comparisons hold.
func (r *Redactor) Error(err error) error {
	if err == nil || r.Empty() {
		return err
	}
	msg := err.Error()
	red := r.Redact(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// AddConfig teaches r every secret of a decoded config value v (a pointer to the file's struct,
// or any section): the value of each Secret field; the content of the file named by each
// "<key>_file" field that sits beside a Secret field "<key>" (the token_file and
// bind_password_file convention); each string field tagged `secret:"true"`; and the password
// of any URL with credentials in it. Files that cannot be read are reported in the returned
// error and skipped: the component that uses the file reports them properly when it starts.
func (r *Redactor) AddConfig(v any) error {
	var errs []error
	var walk func(rv reflect.Value, depth int)
	walk = func(rv reflect.Value, depth int) {
		if depth > 32 || !rv.IsValid() {
			return
		}
		switch rv.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !rv.IsNil() {
				walk(rv.Elem(), depth+1)
			}
		case reflect.Slice, reflect.Array:
			for i := 0; i < rv.Len(); i++ {
				walk(rv.Index(i), depth+1)
			}
		case reflect.Map:
			it := rv.MapRange()
			for it.Next() {
				walk(it.Value(), depth+1)
			}
		case reflect.String:
			if u, err := url.Parse(rv.String()); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok {
					r.Add(pw)
				}
			}
		case reflect.Struct:
			if rv.Type() == reflect.TypeFor[Secret]() {
				r.Add(rv.Interface().(Secret).value)
				return
			}
			errs = append(errs, r.addStruct(rv, func(f reflect.Value) { walk(f, depth+1) })...)
		}
	}
	walk(reflect.ValueOf(v), 0)
	return errors.Join(errs...)
}

// addStruct handles one struct's fields: secret files and tagged strings here, everything else
// handed back to walk.
func (r *Redactor) addStruct(rv reflect.Value, walk func(reflect.Value)) []error {
	t := rv.Type()
	secretKeys := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && f.Type == reflect.TypeFor[Secret]() {
			secretKeys[yamlKey(f)] = true
		}
	}
	var errs []error
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := rv.Field(i)
		key := yamlKey(f)
		switch {
		case f.Type.Kind() == reflect.String && f.Tag.Get("secret") == "true":
			r.Add(fv.String())
		case f.Type.Kind() == reflect.String && strings.HasSuffix(key, "_file") && secretKeys[strings.TrimSuffix(key, "_file")]:
			if path := fv.String(); path != "" {
				s, err := ResolveSecret(Secret{}, path)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", key, err))
					continue
				}
				r.Add(s.value)
			}
		default:
			walk(fv)
		}
	}
	return errs
}

func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}
