package ldap

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadLDIF streams the content records of an LDIF file (RFC 2849) to fn. Change records are
// refused: an export is expected, not a patch.
func ReadLDIF(r io.Reader, fn func(Entry) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var (
		lines   []string // logical lines of the current record
		lineNo  int
		startNo int
	)
	flush := func() error {
		if len(lines) == 0 {
			return nil
		}
		e, err := parseRecord(lines)
		lines = lines[:0]
		if err != nil {
			return fmt.Errorf("ldif: record at line %d: %w", startNo, err)
		}
		if e.DN == "" {
			return nil // a "version: 1" header
		}
		return fn(e)
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case line == "":
			if err := flush(); err != nil {
				return err
			}
		case strings.HasPrefix(line, " "):
			if len(lines) == 0 {
				return fmt.Errorf("ldif: line %d: continuation with nothing to continue", lineNo)
			}
			lines[len(lines)-1] += line[1:]
		default:
			if len(lines) == 0 {
				startNo = lineNo
			}
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("ldif: line %d: %w", lineNo, err)
	}
	return flush()
}

func parseRecord(lines []string) (Entry, error) {
	e := Entry{Attrs: map[string][]string{}}
	for _, l := range lines {
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" {
			return Entry{}, fmt.Errorf("%q is not 'attribute: value'", truncate(l, 40))
		}
		switch {
		case strings.HasPrefix(value, ":"):
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value[1:]))
			if err != nil {
				return Entry{}, fmt.Errorf("attribute %s: bad base64: %w", name, err)
			}
			value = string(raw)
		case strings.HasPrefix(value, "<"):
			return Entry{}, fmt.Errorf("attribute %s: URL values are not supported", name)
		default:
			value = strings.TrimLeft(value, " ")
		}
		lower := strings.ToLower(name)
		switch lower {
		case "version":
			continue
		case "dn":
			e.DN = value
			continue
		case "changetype":
			return Entry{}, fmt.Errorf("change records are not supported (changetype: %s)", value)
		}
		if e.DN == "" {
			return Entry{}, fmt.Errorf("attribute %s before the dn", name)
		}
		if i := strings.IndexByte(lower, ';'); i >= 0 {
			lower = lower[:i] // options such as ;lang-en or ;binary
		}
		e.Attrs[lower] = append(e.Attrs[lower], value)
	}
	return e, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// usersFromFile applies base_dn, scope and user_filter to an LDIF export, so a preview from a
// file selects the same users as the directory would.
func (c *Client) usersFromFile(ctx context.Context, fn func(Entry) error) error {
	return c.fileSearch(ctx, c.UserQuery(nil), "", fn)
}

// fileSearch is Search over the LDIF file the URL names.
func (c *Client) fileSearch(ctx context.Context, q Query, extraFilter string, fn func(Entry) error) error {
	path := c.cfg.filePath()
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ldap: %w", err)
	}
	defer f.Close()
	return filterEntries(ctx, f, q, extraFilter, fn)
}

// filterEntries applies q (base, scope, filter, and extraFilter ANDed) to the records of an
// LDIF stream. All attributes are kept: the file is small, and the mapping takes what it needs.
func filterEntries(ctx context.Context, r io.Reader, q Query, extraFilter string, fn func(Entry) error) error {
	filter, err := andFilter(q.Filter, extraFilter)
	if err != nil {
		return err
	}
	m, err := CompileMatcher(filter)
	if err != nil {
		return fmt.Errorf("ldap: %w", err)
	}
	var base *DN
	if q.BaseDN != "" {
		if base, err = ParseDN(q.BaseDN); err != nil {
			return fmt.Errorf("ldap: base_dn: %w", err)
		}
	}
	return ReadLDIF(r, func(e Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if base != nil && !inScope(base, e.DN, q.Scope) {
			return nil
		}
		if !m.Match(e) {
			return nil
		}
		fileIDs(&e, q.IDAttribute)
		return fn(e)
	})
}

// fileIDs fills ID and UUID of an LDIF record. An objectGUID exported as base64 (ldifde,
// ldbsearch) arrives as 16 raw bytes and is put in canonical form, as a directory read does.
func fileIDs(e *Entry, idAttr string) {
	if g := e.Attrs["objectguid"]; len(g) == 1 && len(g[0]) == 16 {
		e.Attrs["objectguid"] = []string{GUIDString([]byte(g[0]))}
	}
	e.UUID = uuidOf(*e)
	e.ID = e.First(idAttr)
}

func inScope(base *DN, dn, scope string) bool {
	d, err := ParseDN(dn)
	if err != nil {
		return false
	}
	return inScopeDN(base, d, scope)
}
