package config

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RedactCore wraps core so that no known secret reaches the log: the message, the stack and
// every field, whether passed to the log call or attached earlier with Logger.With.
//
// Both paths need their own hook. Fields given to With are encoded into the inner core at
// With time, so With redacts them there. Fields given to a log call are redacted by a
// pre-write hook that Check registers on the entry: the inner core's own Check still runs,
// so a sampler inside (or outside) this core keeps sampling. A wrapper that instead added
// itself to the entry with AddCore would bypass an inner sampler's Check and silently turn
// sampling off.
func RedactCore(core zapcore.Core, r *Redactor) zapcore.Core {
	return &redactCore{Core: core, r: r}
}

type redactCore struct {
	zapcore.Core
	r *Redactor
}

// Level keeps zap's level checks working through the wrapper.
func (c *redactCore) Level() zapcore.Level { return zapcore.LevelOf(c.Core) }

func (c *redactCore) With(fs []zapcore.Field) zapcore.Core {
	return &redactCore{Core: c.Core.With(c.r.fields(fs)), r: c.r}
}

func (c *redactCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	out := c.Core.Check(e, ce)
	if out == nil {
		return nil
	}
	// When ce already carried another core of a tee, the hook redacts for it too: harmless.
	return out.Before(e, c.hook)
}

// Write serves callers that write to the core directly rather than through Check.
func (c *redactCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	e, fs = c.hook(e, fs)
	return c.Core.Write(e, fs)
}

func (c *redactCore) hook(e zapcore.Entry, fs []zapcore.Field) (zapcore.Entry, []zapcore.Field) {
	if c.r.Empty() {
		return e, fs
	}
	e.Message = c.r.Redact(e.Message)
	e.Stack = c.r.Redact(e.Stack)
	return e, c.r.fields(fs)
}

// fields returns fs with every secret redacted, copying only when something changed.
func (r *Redactor) fields(fs []zapcore.Field) []zapcore.Field {
	if r.Empty() {
		return fs
	}
	var out []zapcore.Field
	for i, f := range fs {
		red, changed := r.field(f)
		if !changed {
			if out != nil {
				out = append(out, f)
			}
			continue
		}
		if out == nil {
			out = append(make([]zapcore.Field, 0, len(fs)+len(red)), fs[:i]...)
		}
		out = append(out, red...)
	}
	if out == nil {
		return fs
	}
	return out
}

// field redacts one field. Strings are redacted in place. Anything that encodes to text some
// other way (errors, Stringers, byte strings, reflected values, object and array marshalers,
// inline objects) is encoded as the JSON encoder would, and only when that text holds a
// secret is the field replaced by its redacted encoding, key by key.
func (r *Redactor) field(f zapcore.Field) ([]zapcore.Field, bool) {
	switch f.Type {
	case zapcore.StringType:
		s := r.Redact(f.String)
		if s == f.String {
			return nil, false
		}
		f.String = s
		return []zapcore.Field{f}, true
	case zapcore.ErrorType:
		// the common case, a plain error whose message holds no secret, needs no encoding
		if err, ok := f.Interface.(error); ok && plainError(err) && r.Redact(err.Error()) == err.Error() {
			return nil, false
		}
	case zapcore.ByteStringType, zapcore.BinaryType, zapcore.StringerType,
		zapcore.ReflectType, zapcore.ObjectMarshalerType, zapcore.ArrayMarshalerType,
		zapcore.InlineMarshalerType:
	default:
		// numbers, booleans, times, durations, namespaces: no text to leak
		return nil, false
	}
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{})
	buf, err := enc.EncodeEntry(zapcore.Entry{}, []zapcore.Field{f})
	if err != nil {
		// The field cannot be encoded (a panicking Stringer, an unmarshalable value): the
		// real encoder would print the failure, which may quote the value. Say only that.
		return []zapcore.Field{zap.String(f.Key, fmt.Sprintf("%s (could not encode the field)", Redacted))}, true
	}
	text := buf.String()
	buf.Free()
	red := r.Redact(text)
	if red == text {
		return nil, false
	}
	out, ok := splitObject([]byte(red))
	if !ok {
		return []zapcore.Field{zap.String(f.Key, red)}, true
	}
	return out, true
}

// splitObject turns one encoded JSON object back into fields, keeping key order: a string
// value as a string field, anything else as raw JSON.
func splitObject(data []byte) ([]zapcore.Field, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var out []zapcore.Field
	for dec.More() {
		t, err := dec.Token()
		key, isKey := t.(string)
		if err != nil || !isKey {
			return nil, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		var s string
		if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
			out = append(out, zap.String(key, s))
			continue
		}
		out = append(out, zap.Reflect(key, raw))
	}
	return out, true
}

// plainError reports whether zap encodes err as its message alone: not nil (a nil pointer
// panics in Error), not a Formatter (whose %+v zap adds as "…Verbose"), not a group (whose
// causes zap lists).
func plainError(err error) (plain bool) {
	defer func() {
		if recover() != nil {
			plain = false
		}
	}()
	switch err.(type) {
	case fmt.Formatter, interface{ Errors() []error }:
		return false
	}
	_ = err.Error()
	return true
}
