package ldap

import (
	"fmt"
	"strconv"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
)

// DN is a parsed distinguished name.
type DN = goldap.DN

// Matcher evaluates an LDAP filter (RFC 4515) against an Entry in memory, for LDIF sources and
// for override rules that select users by filter. Matching is case-insensitive, as for the
// caseIgnore attributes that directories use for names and mail.
type Matcher struct{ root *ber.Packet }

// CompileMatcher parses filter with go-ldap's own compiler, so the syntax accepted is exactly
// the one sent to the server.
func CompileMatcher(filter string) (Matcher, error) {
	p, err := goldap.CompileFilter(filter)
	if err != nil {
		return Matcher{}, fmt.Errorf("filter %q: %w", filter, err)
	}
	return Matcher{root: p}, nil
}

// Match reports whether e satisfies the filter.
func (m Matcher) Match(e Entry) bool {
	if m.root == nil {
		return true
	}
	return match(m.root, e)
}

func match(p *ber.Packet, e Entry) bool {
	switch p.Tag {
	case goldap.FilterAnd:
		for _, c := range p.Children {
			if !match(c, e) {
				return false
			}
		}
		return true
	case goldap.FilterOr:
		for _, c := range p.Children {
			if match(c, e) {
				return true
			}
		}
		return false
	case goldap.FilterNot:
		return len(p.Children) == 1 && !match(p.Children[0], e)
	case goldap.FilterPresent:
		return len(values(e, p.Data.String())) > 0
	case goldap.FilterEqualityMatch, goldap.FilterApproxMatch, goldap.FilterGreaterOrEqual, goldap.FilterLessOrEqual:
		if len(p.Children) != 2 {
			return false
		}
		attr, want := packetString(p.Children[0]), strings.ToLower(packetString(p.Children[1]))
		for _, v := range values(e, attr) {
			c := strings.Compare(strings.ToLower(v), want)
			switch p.Tag {
			case goldap.FilterGreaterOrEqual:
				if c >= 0 {
					return true
				}
			case goldap.FilterLessOrEqual:
				if c <= 0 {
					return true
				}
			default:
				if c == 0 {
					return true
				}
			}
		}
		return false
	case goldap.FilterSubstrings:
		if len(p.Children) != 2 {
			return false
		}
		attr := packetString(p.Children[0])
		for _, v := range values(e, attr) {
			if substringMatch(strings.ToLower(v), p.Children[1].Children) {
				return true
			}
		}
		return false
	case goldap.FilterExtensibleMatch:
		return extensibleMatch(p, e)
	}
	return false
}

// AD's bitwise matching rules, as used in (userAccountControl:1.2.840.113556.1.4.803:=2).
const (
	ruleBitAnd = "1.2.840.113556.1.4.803"
	ruleBitOr  = "1.2.840.113556.1.4.804"
)

// extensibleMatch evaluates the bitwise AND/OR rules; other matching rules match nothing
// rather than guess.
func extensibleMatch(p *ber.Packet, e Entry) bool {
	var rule, attr, value string
	for _, c := range p.Children {
		switch c.Tag {
		case goldap.MatchingRuleAssertionMatchingRule:
			rule = packetString(c)
		case goldap.MatchingRuleAssertionType:
			attr = packetString(c)
		case goldap.MatchingRuleAssertionMatchValue:
			value = packetString(c)
		}
	}
	want, err := strconv.ParseInt(value, 10, 64)
	if err != nil || (rule != ruleBitAnd && rule != ruleBitOr) {
		return false
	}
	for _, v := range values(e, attr) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		if (rule == ruleBitAnd && n&want == want) || (rule == ruleBitOr && n&want != 0) {
			return true
		}
	}
	return false
}

// Attributes lists the attribute names the filter reads, to request them from the directory.
func (m Matcher) Attributes() []string {
	seen := map[string]bool{}
	var out []string
	var walk func(p *ber.Packet)
	walk = func(p *ber.Packet) {
		var name string
		switch p.Tag {
		case goldap.FilterAnd, goldap.FilterOr, goldap.FilterNot:
			for _, c := range p.Children {
				walk(c)
			}
			return
		case goldap.FilterPresent:
			name = p.Data.String()
		case goldap.FilterExtensibleMatch:
			for _, c := range p.Children {
				if c.Tag == goldap.MatchingRuleAssertionType {
					name = packetString(c)
				}
			}
		default:
			if len(p.Children) > 0 {
				name = packetString(p.Children[0])
			}
		}
		if l := strings.ToLower(name); l != "" && !seen[l] {
			seen[l] = true
			out = append(out, name)
		}
	}
	if m.root != nil {
		walk(m.root)
	}
	return out
}

func substringMatch(v string, parts []*ber.Packet) bool {
	for _, part := range parts {
		s := strings.ToLower(packetString(part))
		switch part.Tag {
		case goldap.FilterSubstringsInitial:
			if !strings.HasPrefix(v, s) {
				return false
			}
			v = v[len(s):]
		case goldap.FilterSubstringsAny:
			i := strings.Index(v, s)
			if i < 0 {
				return false
			}
			v = v[i+len(s):]
		case goldap.FilterSubstringsFinal:
			if !strings.HasSuffix(v, s) {
				return false
			}
		}
	}
	return true
}

func packetString(p *ber.Packet) string {
	if s, ok := p.Value.(string); ok {
		return s
	}
	if p.Data != nil {
		return p.Data.String()
	}
	return ""
}

func values(e Entry, attr string) []string {
	if strings.EqualFold(attr, "objectClass") {
		return e.Attrs["objectclass"]
	}
	return e.Attrs[strings.ToLower(attr)]
}
