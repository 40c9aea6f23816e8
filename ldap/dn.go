package ldap

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	goldap "github.com/go-ldap/ldap/v3"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// NormalizeDN gives one canonical form for DNs that name the same entry, so that DNs can be
// compared as strings and used as map keys. Directories write the same DN in different ways:
// slapadd keeps `cn=Research\, Europe` while the memberof overlay writes `cn=Research\2C Europe`,
// AD answers `CN=Alice` where a member value says `cn=alice`, and people type spaces after
// commas. The canonical form:
//   - attribute types lower-cased, well-known OIDs replaced by their names (2.5.4.3 → cn);
//   - values unescaped, then (RFC 4518 in spirit: directories compare names with caseIgnoreMatch)
//     NFKC-normalised, case-folded, with runs of white space made one space and the ends trimmed;
//   - values escaped again with the minimal RFC 4514 set, so `\,` and `\2C` come out alike;
//   - the values of a multi-valued RDN sorted, so `cn=a+uid=b` equals `uid=b+cn=a`;
//   - no spaces around separators.
//
// The empty DN (the root DSE) normalises to "".
func NormalizeDN(dn string) (string, error) {
	if simpleDN(dn) {
		return strings.ToLower(dn), nil // ASCII only: no allocation when already lower case
	}
	return normalizeParsed(dn)
}

// simpleDN reports whether dn is in the form nearly every DN a directory returns has: RDNs of
// one attribute, separated by commas, each a type that is a name (a letter, then letters,
// digits and hyphens) and a non-empty value of ASCII letters, digits and `.-_@`, with no
// spaces, escapes or '+'. Such a DN's canonical form is its ASCII lower-casing (nothing to
// unescape, fold beyond ASCII, collapse, sort or escape), found without parsing it: a sync
// normalises every user's and every member's DN. FuzzNormalizeDN checks both ways agree.
func simpleDN(dn string) bool {
	if dn == "" {
		return false
	}
	i := 0
	for {
		// type
		if i >= len(dn) || !isASCIILetter(dn[i]) {
			return false
		}
		for i++; i < len(dn) && (isASCIILetter(dn[i]) || isDigit(dn[i]) || dn[i] == '-'); i++ {
		}
		if i >= len(dn) || dn[i] != '=' {
			return false
		}
		// value
		start := i + 1
		for i++; i < len(dn) && (isASCIILetter(dn[i]) || isDigit(dn[i]) || dn[i] == '.' || dn[i] == '-' || dn[i] == '_' || dn[i] == '@'); i++ {
		}
		if i == start {
			return false
		}
		if i == len(dn) {
			return true
		}
		if dn[i] != ',' {
			return false
		}
		i++
	}
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool       { return c >= '0' && c <= '9' }

// normalizeParsed is NormalizeDN for any DN: parsed, checked, and rebuilt in canonical form.
func normalizeParsed(dn string) (string, error) {
	d, err := goldap.ParseDN(dn)
	if err != nil {
		return "", err
	}
	for _, rdn := range d.RDNs {
		for _, a := range rdn.Attributes {
			if !validType(canonicalType(a.Type)) {
				return "", fmt.Errorf("DN %q: attribute type %q is neither a name nor an OID (RFC 4512)", dn, a.Type)
			}
		}
	}
	return canonicalDN(d), nil
}

// validType reports whether t (canonical: lower case, trimmed) is an RFC 4512 descr (a letter,
// then letters, digits and hyphens) or a numericoid. go-ldap accepts other types (an escaped
// space, say), which would not survive normalising.
func validType(t string) bool {
	if t == "" {
		return false
	}
	if t[0] >= 'a' && t[0] <= 'z' {
		for i := 1; i < len(t); i++ {
			if c := t[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
		return true
	}
	for _, part := range strings.Split(t, ".") {
		if part == "" || strings.Trim(part, "0123456789") != "" || (len(part) > 1 && part[0] == '0') {
			return false
		}
	}
	return true
}

func canonicalDN(d *goldap.DN) string {
	var b strings.Builder
	for i, rdn := range d.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		avas := make([]string, len(rdn.Attributes))
		for j, a := range rdn.Attributes {
			avas[j] = canonicalType(a.Type) + "=" + escapeValue(canonicalValue(a.Value))
		}
		sort.Strings(avas)
		b.WriteString(strings.Join(avas, "+"))
	}
	return b.String()
}

// wellKnownTypes maps the OIDs of the attribute types that appear in DNs to their names.
var wellKnownTypes = map[string]string{
	"2.5.4.3": "cn", "2.5.4.6": "c", "2.5.4.7": "l", "2.5.4.8": "st", "2.5.4.9": "street",
	"2.5.4.10": "o", "2.5.4.11": "ou", "0.9.2342.19200300.100.1.1": "uid",
	"0.9.2342.19200300.100.1.25": "dc",
}

func canonicalType(t string) string {
	t = strings.ToLower(strings.TrimSpace(t))
	t = strings.TrimPrefix(t, "oid.")
	if n, ok := wellKnownTypes[t]; ok {
		return n
	}
	return t
}

var folder = cases.Fold()

// canonicalValue folds case and normalises a value. Fold and NFKC are applied until they no
// longer change it, so normalising a normalised DN gives it back unchanged. Bytes that are not
// UTF-8 (a binary value) are only ASCII-lower-cased.
func canonicalValue(v string) string {
	if !utf8.ValidString(v) {
		return asciiLower(v)
	}
	for range 4 {
		next := collapseSpaces(norm.NFKC.String(folder.String(v)))
		if next == v {
			break
		}
		v = next
	}
	return v
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func collapseSpaces(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// escapeValue escapes a DN value with RFC 4514's minimal set: the specials anywhere, a leading
// '#' or space, a trailing space, and control or non-UTF-8 bytes as hex. Other UTF-8 stays as
// it is, so a canonical DN is still readable in a plan.
func escapeValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		c := v[i]
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\%02x`, c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\%02x`, c)
		case strings.IndexByte(`"+,;<>\`, c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		case i == 0 && (c == '#' || c == ' '):
			b.WriteByte('\\')
			b.WriteByte(c)
		case i == len(v)-1 && c == ' ':
			b.WriteString(`\ `)
		default:
			b.WriteString(v[i : i+size])
		}
		i += size
	}
	return b.String()
}

// SplitUniqueMember splits a uniqueMember value (RFC 4517 NameAndOptionalUID: a DN optionally
// followed by `#'0101'B`) into the DN and the bit string without its quotes and B ("" when
// there is none). A '#' that is escaped, or that starts a hex-encoded value, belongs to the DN.
func SplitUniqueMember(v string) (dn, uid string, err error) {
	dn = v
	if i := strings.LastIndex(v, "#'"); i >= 0 && strings.HasSuffix(v, "'B") && len(v)-i >= 4 {
		bits := v[i+2 : len(v)-2]
		if strings.Trim(bits, "01") == "" && !escaped(v, i) {
			dn, uid = v[:i], bits
		}
	}
	if _, err := goldap.ParseDN(dn); err != nil || strings.TrimSpace(dn) == "" {
		if err == nil {
			err = errors.New("empty DN")
		}
		return "", "", fmt.Errorf("uniqueMember %q: %w", truncate(v, 80), err)
	}
	return dn, uid, nil
}

// escaped reports whether the byte at i is preceded by an odd number of backslashes.
func escaped(s string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// inScopeDN reports whether d is within scope (sub, one, base) of base, comparing names
// case-insensitively.
func inScopeDN(base, d *goldap.DN, scope string) bool {
	switch scope {
	case "base":
		return base.EqualFold(d)
	case "one":
		return len(d.RDNs) == len(base.RDNs)+1 && base.AncestorOfFold(d)
	}
	return base.EqualFold(d) || base.AncestorOfFold(d)
}

// GUIDString renders AD's 16-byte objectGUID in its canonical form; the first three fields are
// little-endian, so uuid.FromBytes would print a different id than AD tools show.
func GUIDString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// ParseGUID turns the canonical form of an objectGUID back into the 16 bytes AD stores, the
// inverse of GUIDString.
func ParseGUID(s string) ([]byte, error) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return nil, fmt.Errorf("%q is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", truncate(s, 40))
	}
	raw, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil {
		return nil, fmt.Errorf("%q is not a GUID: %w", truncate(s, 40), err)
	}
	out := make([]byte, 16)
	binary.LittleEndian.PutUint32(out[0:4], binary.BigEndian.Uint32(raw[0:4]))
	binary.LittleEndian.PutUint16(out[4:6], binary.BigEndian.Uint16(raw[4:6]))
	binary.LittleEndian.PutUint16(out[6:8], binary.BigEndian.Uint16(raw[6:8]))
	copy(out[8:], raw[8:])
	return out, nil
}
