package sync

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/scimsync/scimsync/ldap"
)

// Template is one mapping value: literal text with {…} placeholders.
//
//	"{uid}"                                  an attribute's first value
//	"{givenName} {sn}"                       several attributes
//	"{mail ?? userPrincipalName}"            the first that is present
//	"{title ?? \"Staff\"}" / "{title | default(\"Staff\")}"   a default
//	"{uid | lower | replace(\"[^a-z0-9-]\", \"-\") | truncate(32)}"
//	"{{" and "}}"                            literal braces
//
// A placeholder that resolves to nothing makes the whole value absent, unless it names a
// literal or a default: a half-built value ("@example.org") is never sent.
type Template struct {
	src   string
	parts []part
}

type part struct {
	literal string
	ph      *placeholder
}

type placeholder struct {
	terms    []term // alternatives, first non-empty wins
	funcs    []fn
	optional bool // has a literal alternative or default(): empty is a value, not an absence
}

type term struct {
	attr    string
	literal string
	isLit   bool
}

type fn struct {
	name  string
	apply func(string) string
}

// CompileTemplate parses src, naming the position of any error.
func CompileTemplate(src string) (*Template, error) {
	t := &Template{src: src}
	var lit strings.Builder
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '{' && i+1 < len(src) && src[i+1] == '{':
			lit.WriteByte('{')
			i += 2
		case c == '}' && i+1 < len(src) && src[i+1] == '}':
			lit.WriteByte('}')
			i += 2
		case c == '}':
			return nil, fmt.Errorf("template %q: unmatched } at offset %d (write }} for a literal brace)", src, i)
		case c == '{':
			end, err := closing(src, i+1)
			if err != nil {
				return nil, fmt.Errorf("template %q: %w", src, err)
			}
			ph, err := parsePlaceholder(src[i+1 : end])
			if err != nil {
				return nil, fmt.Errorf("template %q: placeholder at offset %d: %w", src, i, err)
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, part{literal: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, part{ph: ph})
			i = end + 1
		default:
			lit.WriteByte(c)
			i++
		}
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, part{literal: lit.String()})
	}
	return t, nil
}

// closing finds the } that ends a placeholder, skipping quoted strings.
func closing(s string, from int) (int, error) {
	inQuote := false
	for i := from; i < len(s); i++ {
		switch {
		case inQuote && s[i] == '\\':
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case !inQuote && s[i] == '}':
			return i, nil
		}
	}
	return 0, fmt.Errorf("unclosed { at offset %d", from-1)
}

// splitTop splits s on sep outside quoted strings and parentheses.
func splitTop(s, sep string) []string {
	var out []string
	depth, inQuote, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case depth == 0 && strings.HasPrefix(s[i:], sep):
			out = append(out, s[start:i])
			start = i + len(sep)
			i += len(sep) - 1
		}
	}
	return append(out, s[start:])
}

var attrName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*$`)

func parsePlaceholder(body string) (*placeholder, error) {
	stages := splitTop(body, "|")
	ph := &placeholder{}
	for _, alt := range splitTop(stages[0], "??") {
		alt = strings.TrimSpace(alt)
		switch {
		case strings.HasPrefix(alt, `"`):
			s, err := strconv.Unquote(alt)
			if err != nil {
				return nil, fmt.Errorf("bad string %s", alt)
			}
			ph.terms = append(ph.terms, term{literal: s, isLit: true})
			ph.optional = true
		case attrName.MatchString(alt):
			ph.terms = append(ph.terms, term{attr: strings.ToLower(alt)})
		default:
			return nil, fmt.Errorf("%q is neither an LDAP attribute name nor a quoted string", alt)
		}
	}
	for _, st := range stages[1:] {
		f, optional, err := parseFunc(strings.TrimSpace(st))
		if err != nil {
			return nil, err
		}
		ph.optional = ph.optional || optional
		ph.funcs = append(ph.funcs, f)
	}
	return ph, nil
}

var callRe = regexp.MustCompile(`^([a-z]+)(?:\((.*)\))?$`)

func parseFunc(s string) (fn, bool, error) {
	m := callRe.FindStringSubmatch(s)
	if m == nil {
		return fn{}, false, fmt.Errorf("%q is not a function call", s)
	}
	name := m[1]
	var args []string
	if m[2] != "" {
		for _, a := range splitTop(m[2], ",") {
			args = append(args, strings.TrimSpace(a))
		}
	}
	str := func(i int) (string, error) {
		if i >= len(args) {
			return "", fmt.Errorf("%s: missing argument %d", name, i+1)
		}
		v, err := strconv.Unquote(args[i])
		if err != nil {
			return "", fmt.Errorf("%s: argument %d must be a quoted string", name, i+1)
		}
		return v, nil
	}
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %d argument(s), got %d", name, n, len(args))
		}
		return nil
	}
	switch name {
	case "lower", "upper", "trim", "ascii":
		if err := want(0); err != nil {
			return fn{}, false, err
		}
		return fn{name: name, apply: simpleFuncs[name]}, false, nil
	case "replace":
		if err := want(2); err != nil {
			return fn{}, false, err
		}
		pat, err := str(0)
		if err != nil {
			return fn{}, false, err
		}
		repl, err := str(1)
		if err != nil {
			return fn{}, false, err
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return fn{}, false, fmt.Errorf("replace: bad pattern %q: %w", pat, err)
		}
		return fn{name: name, apply: func(v string) string { return re.ReplaceAllLiteralString(v, repl) }}, false, nil
	case "truncate":
		if err := want(1); err != nil {
			return fn{}, false, err
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 {
			return fn{}, false, fmt.Errorf("truncate: want a positive number of characters, got %s", args[0])
		}
		return fn{name: name, apply: func(v string) string { return truncateRunes(v, n) }}, false, nil
	case "default":
		if err := want(1); err != nil {
			return fn{}, false, err
		}
		d, err := str(0)
		if err != nil {
			return fn{}, false, err
		}
		return fn{name: name, apply: func(v string) string {
			if v == "" {
				return d
			}
			return v
		}}, true, nil
	}
	return fn{}, false, fmt.Errorf("unknown function %q (lower, upper, trim, ascii, replace, truncate, default)", name)
}

var simpleFuncs = map[string]func(string) string{
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"trim":  strings.TrimSpace,
	"ascii": foldASCII,
}

// truncateRunes cuts to n characters, never inside a UTF-8 sequence.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// foldASCII replaces common Latin letters with diacritics by their base letter ("Zoë Ünal" →
// "Zoe Unal") and drops other non-ASCII characters, for targets that only take ASCII names.
func foldASCII(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
			continue
		}
		if f, ok := latinFold[r]; ok {
			b.WriteString(f)
		} else if unicode.IsSpace(r) {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

var latinFold = func() map[rune]string {
	m := map[rune]string{'ß': "ss", 'Æ': "AE", 'æ': "ae", 'Ø': "O", 'ø': "o", 'Œ': "OE", 'œ': "oe", 'Ł': "L", 'ł': "l", 'Đ': "D", 'đ': "d", 'Þ': "Th", 'þ': "th"}
	groups := map[string]string{
		"A": "ÀÁÂÃÄÅĀĂĄ", "a": "àáâãäåāăą", "C": "ÇĆĈĊČ", "c": "çćĉċč", "D": "Ď", "d": "ď",
		"E": "ÈÉÊËĒĔĖĘĚ", "e": "èéêëēĕėęě", "G": "ĜĞĠĢ", "g": "ĝğġģ", "I": "ÌÍÎÏĨĪĬĮİ", "i": "ìíîïĩīĭįı",
		"N": "ÑŃŅŇ", "n": "ñńņň", "O": "ÒÓÔÕÖŌŎŐ", "o": "òóôõöōŏő", "R": "ŔŖŘ", "r": "ŕŗř",
		"S": "ŚŜŞŠ", "s": "śŝşš", "T": "ŢŤ", "t": "ţť", "U": "ÙÚÛÜŨŪŬŮŰŲ", "u": "ùúûüũūŭůűų",
		"Y": "ÝŸ", "y": "ýÿ", "Z": "ŹŻŽ", "z": "źżž",
	}
	for base, chars := range groups {
		for _, r := range chars {
			m[r] = base
		}
	}
	return m
}()

// Attributes lists the LDAP attributes the template reads (lower-cased).
func (t *Template) Attributes() []string {
	var out []string
	for _, p := range t.parts {
		if p.ph == nil {
			continue
		}
		for _, tm := range p.ph.terms {
			if !tm.isLit {
				out = append(out, tm.attr)
			}
		}
	}
	return out
}

// Eval renders the template for e. ok is false when a required placeholder was empty; missing
// then names the attributes that were looked for.
func (t *Template) Eval(e ldap.Entry) (value string, ok bool, missing []string) {
	var b strings.Builder
	ok = true
	for _, p := range t.parts {
		if p.ph == nil {
			b.WriteString(p.literal)
			continue
		}
		v := ""
		for _, tm := range p.ph.terms {
			if tm.isLit {
				v = tm.literal
			} else {
				v = e.First(tm.attr)
			}
			if v != "" {
				break
			}
		}
		for _, f := range p.ph.funcs {
			v = f.apply(v)
		}
		if v == "" && !p.ph.optional {
			ok = false
			for _, tm := range p.ph.terms {
				missing = append(missing, tm.attr)
			}
		}
		b.WriteString(v)
	}
	if !ok {
		return "", false, missing
	}
	return strings.TrimSpace(b.String()), true, nil
}

// String is the template's source.
func (t *Template) String() string { return t.src }

// EqualityAttributes returns the attributes whose value the template's result equals, up to
// case, when the template is one placeholder of attribute alternatives with only case
// functions ({uid ?? sAMAccountName}, {mail | lower}): a directory can then be asked for the
// entry producing a given value with an equality filter. ok is false for anything else.
func (t *Template) EqualityAttributes() (attrs []string, ok bool) {
	if len(t.parts) != 1 || t.parts[0].ph == nil {
		return nil, false
	}
	ph := t.parts[0].ph
	for _, f := range ph.funcs {
		if f.name != "lower" && f.name != "upper" {
			return nil, false
		}
	}
	for _, term := range ph.terms {
		if term.isLit {
			return nil, false
		}
		attrs = append(attrs, term.attr)
	}
	return attrs, len(attrs) > 0
}
