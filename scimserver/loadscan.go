package scimserver

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Start-up reads every stored resource. encoding/json costs most of that time (reflection, two
// passes per record), so records this server wrote are read by the small scanner below; any
// value it does not expect (an escape in a string, another field order, an old layout) falls
// back to encoding/json, and FuzzLoadScan keeps both readers in agreement.

// jsonScanner walks a JSON text without building values.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\n' || s.b[s.i] == '\t' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *jsonScanner) eat(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes; ok is false for anything else (the caller falls back).
func (s *jsonScanner) str() (string, bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	j := bytes.IndexByte(s.b[s.i+1:], '"')
	if j < 0 {
		return "", false
	}
	raw := s.b[s.i+1 : s.i+1+j]
	if bytes.IndexByte(raw, '\\') >= 0 {
		return "", false
	}
	for _, c := range raw {
		if c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(raw) {
		return "", false // encoding/json would substitute U+FFFD
	}
	s.i += j + 2
	return string(raw), true
}

// skip passes over one value of any kind; strings may hold escapes here.
func (s *jsonScanner) skip() bool {
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		for j := s.i + 1; j < len(s.b); j++ {
			switch s.b[j] {
			case '\\':
				j++
			case '"':
				if !json.Valid(s.b[s.i : j+1]) {
					return false
				}
				s.i = j + 1
				return true
			}
		}
		return false
	case c == '{':
		// stored values passed schema validation, so nesting is shallow
		return s.object(func(string) bool { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	default:
		j := s.i
		for j < len(s.b) && bytes.IndexByte([]byte(",}] \n\t\r"), s.b[j]) < 0 {
			j++
		}
		if j == s.i || !json.Valid(s.b[s.i:j]) {
			return false
		}
		s.i = j
		return true
	}
}

// caseTwin reports a key that encoding/json would match to one of names without being it
// (it matches field names case-insensitively): the fast path then steps aside.
func caseTwin(k string, names ...string) bool {
	for _, n := range names {
		if k != n && strings.EqualFold(k, n) {
			return true
		}
	}
	return false
}

// object calls field for every key of an object; field must consume the value.
func (s *jsonScanner) object(field func(key string) bool) bool {
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	for {
		k, ok := s.str()
		if !ok || !s.eat(':') || !field(k) {
			return false
		}
		if s.eat(',') {
			continue
		}
		return s.eat('}')
	}
}

func (s *jsonScanner) array(el func() bool) bool {
	if !s.eat('[') {
		return false
	}
	if s.eat(']') {
		return true
	}
	for {
		if !el() {
			return false
		}
		if s.eat(',') {
			continue
		}
		return s.eat(']')
	}
}

func (s *jsonScanner) uint() (uint64, bool) {
	s.ws()
	j := s.i
	for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
		j++
	}
	digits := s.b[s.i:j]
	if len(digits) > 1 && digits[0] == '0' {
		return 0, false // JSON has no leading zeros
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	s.i = j
	return n, err == nil && n <= math.MaxInt32
}

// scanStored reads a stored record as encode writes it; ok is false when the fast path does
// not apply.
func scanStored(data []byte) (r *record, ok bool) {
	s := &jsonScanner{b: data}
	r = &record{}
	var err error
	done := s.object(func(k string) bool {
		if caseTwin(k, "id", "seq", "version", "owner", "pwhash", "created", "modified", "attrs") {
			return false
		}
		var ok bool
		switch k {
		case "id":
			r.id, ok = s.str()
		case "seq":
			r.seq, ok = s.uint()
		case "version":
			var v uint64
			v, ok = s.uint()
			r.version = int(v)
		case "owner":
			r.owner, ok = s.str()
		case "pwhash":
			r.pwHash, ok = s.str()
		case "created", "modified":
			var v string
			if v, ok = s.str(); ok {
				var t time.Time
				if t, err = time.Parse(time.RFC3339Nano, v); err != nil {
					return false
				}
				if k == "created" {
					r.created = t.UTC()
				} else {
					r.modified = t.UTC()
				}
			}
		case "attrs":
			start := s.i
			if ok = s.skip(); ok {
				r.attrs = bytes.Clone(bytes.TrimSpace(data[start:s.i]))
				ok = len(r.attrs) > 1 && r.attrs[0] == '{'
			}
		default:
			ok = s.skip()
		}
		return ok
	})
	s.ws()
	if !done || s.i != len(data) || r.attrs == nil || r.id == "" {
		return nil, false
	}
	return r, true
}

// scanHot reads the hot attributes of a User's stored attrs.
func scanHot(attrs []byte) (hotJSON, bool) {
	var h hotJSON
	s := &jsonScanner{b: attrs}
	ok := s.object(func(k string) bool {
		if caseTwin(k, "userName", "externalId", "displayName", "active", "name", "emails") {
			return false
		}
		switch k {
		case "userName":
			var ok bool
			h.UserName, ok = s.str()
			return ok
		case "externalId":
			var ok bool
			h.ExternalID, ok = s.str()
			return ok
		case "displayName":
			var ok bool
			h.DisplayName, ok = s.str()
			return ok
		case "active":
			s.ws()
			switch {
			case bytes.HasPrefix(s.b[s.i:], []byte("true")):
				t := true
				h.Active, s.i = &t, s.i+4
			case bytes.HasPrefix(s.b[s.i:], []byte("false")):
				f := false
				h.Active, s.i = &f, s.i+5
			default:
				return false
			}
			return true
		case "name":
			return s.object(func(k string) bool {
				if caseTwin(k, "givenName", "familyName") {
					return false
				}
				var ok bool
				switch k {
				case "givenName":
					h.Name.GivenName, ok = s.str()
				case "familyName":
					h.Name.FamilyName, ok = s.str()
				default:
					ok = s.skip()
				}
				return ok
			})
		case "emails":
			return s.array(func() bool {
				var e struct {
					Value string `json:"value"`
					Type  string `json:"type"`
				}
				ok := s.object(func(k string) bool {
					if caseTwin(k, "value", "type") {
						return false
					}
					var ok bool
					switch k {
					case "value":
						e.Value, ok = s.str()
					case "type":
						e.Type, ok = s.str()
					default:
						ok = s.skip()
					}
					return ok
				})
				h.Emails = append(h.Emails, e)
				return ok
			})
		}
		return s.skip()
	})
	s.ws()
	return h, ok && s.i == len(s.b)
}
