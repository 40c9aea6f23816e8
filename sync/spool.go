package sync

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
)

// spool keeps a plan's items encoded, one segment per kind and action, in memory until a
// segment grows past spillBytes and in a temporary file after that: memory stays bounded
// whatever the size of the plan, and the items Apply executes are the very ones the dry run
// prints.
type spool struct {
	segs map[segKey]*segment
}

type segKey struct {
	kind   Kind
	action Action
}

type segment struct {
	buf  bytes.Buffer
	file *os.File
	n    int
}

// spillBytes is how much of a segment stays in memory; sortLimit how many items are sorted by
// name for display (beyond it, reading order is kept: sorting would need them all in memory).
const (
	spillBytes = 1 << 20
	sortLimit  = 20000
)

func newSpool() *spool { return &spool{segs: map[segKey]*segment{}} }

func (s *spool) add(it Item) error {
	k := segKey{it.Kind, it.Action}
	seg := s.segs[k]
	if seg == nil {
		seg = &segment{}
		s.segs[k] = seg
	}
	if seg.n == sortLimit/16 {
		seg.buf.Grow(spillBytes) // a large segment: stop doubling (and clearing) its buffer
	}
	raw, err := json.Marshal(it)
	if err != nil {
		return fmt.Errorf("sync: encode plan item %q: %w", it.Name, err)
	}
	seg.buf.Write(raw)
	seg.buf.WriteByte('\n')
	seg.n++
	if seg.buf.Len() >= spillBytes {
		return seg.spill()
	}
	return nil
}

func (seg *segment) spill() error {
	if seg.file == nil {
		f, err := os.CreateTemp("", "scimsync-plan-*.jsonl")
		if err != nil {
			return fmt.Errorf("sync: plan spool: %w", err)
		}
		// unlinked at once: the file goes away with the process, whatever happens
		_ = os.Remove(f.Name())
		seg.file = f
	}
	if _, err := seg.file.Write(seg.buf.Bytes()); err != nil {
		return fmt.Errorf("sync: plan spool: %w", err)
	}
	seg.buf.Reset()
	return nil
}

// each decodes the segment's items in order and calls fn with each.
func (s *spool) each(k segKey, fn func(Item) error) error {
	seg := s.segs[k]
	if seg == nil || seg.n == 0 {
		return nil
	}
	if seg.file == nil && seg.n <= sortLimit {
		items := make([]Item, 0, seg.n)
		if err := decodeItems(bytes.NewReader(seg.buf.Bytes()), func(it Item) error { items = append(items, it); return nil }); err != nil {
			return err
		}
		sort.SliceStable(items, func(i, j int) bool { return strings.ToLower(items[i].Name) < strings.ToLower(items[j].Name) })
		for _, it := range items {
			if err := fn(it); err != nil {
				return err
			}
		}
		return nil
	}
	r, err := seg.reader()
	if err != nil {
		return fmt.Errorf("sync: plan spool: %w", err)
	}
	return decodeItems(r, fn)
}

// reader reads the segment from its start: the spilled part, then what is still in memory. A
// section reader never moves the write offset the spill uses.
func (seg *segment) reader() (io.Reader, error) {
	mem := bytes.NewReader(seg.buf.Bytes())
	if seg.file == nil {
		return mem, nil
	}
	info, err := seg.file.Stat()
	if err != nil {
		return nil, err
	}
	return io.MultiReader(io.NewSectionReader(seg.file, 0, info.Size()), mem), nil
}

// eachRaw calls fn with the segment's items as their JSON encoding, in each's order: large
// segments pass through undecoded (what a 100,000-item JSON plan costs is then the copy).
func (s *spool) eachRaw(k segKey, fn func([]byte) error) error {
	seg := s.segs[k]
	if seg == nil || seg.n == 0 {
		return nil
	}
	if seg.file == nil && seg.n <= sortLimit {
		return s.each(k, func(it Item) error {
			raw, err := json.Marshal(it)
			if err != nil {
				return err
			}
			return fn(raw)
		})
	}
	r, err := seg.reader()
	if err != nil {
		return fmt.Errorf("sync: plan spool: %w", err)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 1 {
			if ferr := fn(line[:len(line)-1]); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sync: plan spool: %w", err)
		}
	}
}

// decodeItems reads r as JSON lines, one Item each, and hands them to fn in order.
func decodeItems(r io.Reader, fn func(Item) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			var it Item
			if derr := json.Unmarshal(line, &it); derr != nil {
				return fmt.Errorf("sync: plan spool: %w", derr)
			}
			if ferr := fn(it); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sync: plan spool: %w", err)
		}
	}
}

func (s *spool) close() error {
	var errs []error
	for _, seg := range s.segs {
		if seg.file != nil {
			errs = append(errs, seg.file.Close())
			seg.file = nil
		}
	}
	return errors.Join(errs...)
}

// desiredSpool keeps the users a full read mapped, between claiming names (pass 1) and planning
// them (pass 2), on disk past spillBytes.
type desiredSpool struct {
	seg     segment
	scratch []byte
}

type spooledDesired struct {
	D     Desired
	Entry *entryRef // what hands-off rules by filter need
}

// entryRef is the part of a directory entry kept for pass 2: its attributes, for override
// rules that select users by LDAP filter.
type entryRef struct {
	Attrs map[string][]string
}

func (s *desiredSpool) add(v spooledDesired) error {
	s.scratch = appendDesired(s.scratch[:0], v)
	var n [binary.MaxVarintLen64]byte
	s.seg.buf.Write(n[:binary.PutUvarint(n[:], uint64(len(s.scratch)))])
	s.seg.buf.Write(s.scratch)
	s.seg.n++
	if s.seg.buf.Len() >= spillBytes {
		return s.seg.spill()
	}
	return nil
}

func (s *desiredSpool) each(fn func(spooledDesired) error) error {
	r, err := s.seg.reader()
	if err != nil {
		return fmt.Errorf("sync: desired spool: %w", err)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var rec []byte
	for {
		size, err := binary.ReadUvarint(br)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sync: desired spool: %w", err)
		}
		if size > maxDesiredRecord {
			return fmt.Errorf("sync: desired spool: a record of %d bytes", size)
		}
		rec = slices.Grow(rec[:0], int(size))[:size]
		if _, err := io.ReadFull(br, rec); err != nil {
			return fmt.Errorf("sync: desired spool: %w", err)
		}
		v, err := decodeDesired(rec)
		if err != nil {
			return fmt.Errorf("sync: desired spool: %w", err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
}

// maxDesiredRecord bounds one spooled user (a spool is only ever read back by the process that
// wrote it; the bound keeps a damaged temporary file from asking for any amount of memory):
// 64 MiB holds any directory entry a rule could select by filter, photos included.
const maxDesiredRecord = 64 << 20

// The desired spool holds 100,000 users between the two passes and is read twice: it is a
// length-prefixed binary record per user rather than JSON, whose encoding and decoding cost
// more than a second of CPU per pass at that size. A record is: the external id, DN and UUID,
// the active flag, the values as pairs, then the entry's attributes when kept (a flag, then
// name and values for each); every string a uvarint length and its bytes.
func appendDesired(b []byte, v spooledDesired) []byte {
	b = appendString(b, v.D.ExternalID)
	b = appendString(b, v.D.DN)
	b = appendString(b, v.D.UUID)
	b = append(b, boolByte(v.D.Active))
	b = binary.AppendUvarint(b, uint64(len(v.D.Values)))
	for k, val := range v.D.Values {
		b = appendString(appendString(b, k), val)
	}
	if v.Entry == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(v.Entry.Attrs)))
	for name, vals := range v.Entry.Attrs {
		b = appendString(b, name)
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, val := range vals {
			b = appendString(b, val)
		}
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// recordReader reads the fields of one spooled record; the first error sticks.
type recordReader struct {
	b   []byte
	err error
}

var errShortRecord = errors.New("a record ends early")

func (r *recordReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errShortRecord
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *recordReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errShortRecord
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// count reads a number of elements, each at least one byte long: a count the rest of the
// record cannot hold is an error. Callers allocate for at most preallocMax of them up front
// and grow with the data, so a damaged count costs no more memory than the record's bytes.
func (r *recordReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errShortRecord
		return 0
	}
	return int(n)
}

// preallocMax is the most elements a decoded count allocates for before the data confirms them.
const preallocMax = 64

func decodeDesired(b []byte) (spooledDesired, error) {
	r := recordReader{b: b}
	var v spooledDesired
	v.D.ExternalID, v.D.DN, v.D.UUID = r.string(), r.string(), r.string()
	v.D.Active = r.byte() == 1
	n := r.count()
	v.D.Values = make(map[string]string, min(n, preallocMax))
	for range n {
		k := r.string()
		if v.D.Values[k] = r.string(); r.err != nil {
			break
		}
	}
	if r.byte() == 1 {
		n := r.count()
		v.Entry = &entryRef{Attrs: make(map[string][]string, min(n, preallocMax))}
		for range n {
			name := r.string()
			m := r.count()
			vals := make([]string, 0, min(m, preallocMax))
			for range m {
				if vals = append(vals, r.string()); r.err != nil {
					break
				}
			}
			v.Entry.Attrs[name] = vals
			if r.err != nil {
				break
			}
		}
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = errors.New("a record goes on past its end")
	}
	return v, r.err
}

func (s *desiredSpool) close() {
	if s.seg.file != nil {
		_ = s.seg.file.Close()
	}
}
