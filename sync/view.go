package sync

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/scimsync/scimsync/scimclient"
)

// WriteText prints the plan: a line per resource with its reason, the attribute changes a person
// reads, and the exact operations that will be sent.
func WriteText(w io.Writer, p *Plan) error {
	bw := bufio.NewWriter(w)
	for _, n := range p.Notices {
		fmt.Fprintf(bw, "note: %s\n", printable(n))
	}
	if p.Read.Fallback != "" {
		fmt.Fprintf(bw, "note: the directory was read in full: %s\n", printable(p.Read.Fallback))
	}
	if p.Read.Warning != "" {
		fmt.Fprintf(bw, "note: %s\n", printable(p.Read.Warning))
	}
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	header := false
	err := p.Each(func(it Item) error {
		if it.Action == ActionRefresh {
			return nil // state only: counted in the summary
		}
		if !header {
			fmt.Fprintln(tw, "ACTION\tKIND\tNAME\tDETAIL")
			header = true
		}
		action := string(it.Action)
		if it.Adopt {
			action += " (adopt)"
		}
		if it.Relink != nil {
			action += " (re-link)"
		}
		if it.Blocked {
			action += " [blocked]"
		}
		detail := it.Reason
		switch it.Action {
		case ActionInvalid:
			detail = fmt.Sprintf("%s breaks %q: %s (%s)", it.Attribute, it.Rule, it.Reason, it.DN)
		case ActionCreate:
			if detail == "" {
				detail = it.DN
			}
		}
		name := it.Name
		if name == "" {
			name = "-" // an entry that could not be mapped has no name yet
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", action, it.Kind, printable(name), printable(detail))
		for _, d := range it.Changes {
			fmt.Fprintf(tw, "\t\t\t  %s: %s → %s\n", printable(d.Attribute), quote(d.Old), quote(d.New))
		}
		if m := it.Members; m != nil {
			fmt.Fprintf(tw, "\t\t\t  members: %s\n", memberLine(m))
		}
		for _, op := range it.Operations {
			v := ""
			if op.Value != nil {
				raw, _ := json.Marshal(op.Value)
				v = " " + string(raw)
			}
			fmt.Fprintf(tw, "\t\t\t  PATCH %s %s\n", op.Op, printable(op.Path+v))
		}
		if it.Body != nil && it.Action == ActionUpdate {
			fmt.Fprintf(tw, "\t\t\t  PUT (the target has no PATCH): the whole user\n")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(bw, "warning: %s\n", printable(warn))
	}
	if p.Blocked != nil {
		fmt.Fprintf(bw, "STOPPED: %s\n", printable(p.Blocked.Message))
	}
	if p.GroupsBlocked != nil {
		fmt.Fprintf(bw, "STOPPED (groups): %s\n", printable(p.GroupsBlocked.Message))
	}
	fmt.Fprintln(bw, SummaryLine(p))
	return bw.Flush()
}

// printable is text from a directory or a target made safe for a terminal: one line, no
// control characters, escape sequences or bidi controls (a name could otherwise forge a plan
// line or hide a deletion), and bounded, since a line that long helps nobody; the JSON plan
// keeps the full values.
func printable(s string) string { return scimclient.SanitizeN(s, maxTextColumn) }

// maxTextColumn is how many characters of a name, reason or operation a text line shows.
const maxTextColumn = 1000

// memberLine is a group's member changes in a line: counts, and names up to a few.
func memberLine(m *MemberChanges) string {
	names := func(sign string, ms []Member) string {
		var parts []string
		for i, x := range ms {
			if i == memberNames {
				parts = append(parts, fmt.Sprintf("… %d more", len(ms)-memberNames))
				break
			}
			n := x.Name
			if n == "" {
				n = x.ExternalID
			}
			if x.Group {
				n += " (group)"
			}
			parts = append(parts, printable(n))
		}
		return fmt.Sprintf("%s%d (%s)", sign, len(ms), strings.Join(parts, ", "))
	}
	var out []string
	if len(m.Add) > 0 {
		out = append(out, names("+", m.Add))
	}
	if len(m.Remove) > 0 {
		out = append(out, names("-", m.Remove))
	}
	out = append(out, fmt.Sprintf("%d in all", m.Total))
	if m.Outside > 0 {
		out = append(out, fmt.Sprintf("%d not synced users left out", m.Outside))
	}
	if m.Unmanaged > 0 {
		out = append(out, fmt.Sprintf("%d unmanaged on the target left alone", m.Unmanaged))
	}
	return strings.Join(out, "; ")
}

// memberNames is how many member names a line shows; the JSON plan has them all.
const memberNames = 10

func quote(s string) string {
	if s == "" {
		return "(none)"
	}
	// %q escapes controls and invisible characters; a huge value is cut (the JSON plan has it)
	return scimclient.SanitizeN(fmt.Sprintf("%q", s), maxTextColumn)
}

// SummaryLine is the one-line count of the plan.
func SummaryLine(p *Plan) string {
	target := fmt.Sprint(p.Target)
	if p.Target < 0 {
		target = "not listed"
	}
	s := fmt.Sprintf("Plan (%s, %s): %d to create, %d to update, %d to disable, %d to delete, %d skipped, %d invalid, %d unchanged "+
		"(directory %d, target %s, managed %d).",
		p.Mode, p.Read.Mechanism, p.Summary[ActionCreate], p.Summary[ActionUpdate], p.Summary[ActionDisable], p.Summary[ActionDelete],
		p.Summary[ActionSkip], p.Summary[ActionInvalid], p.Unchanged, p.Source, target, p.Known)
	if p.Excluded > 0 {
		s += fmt.Sprintf(" %d entries excluded (mapping.exclude).", p.Excluded)
	}
	if g := p.Kinds[KindGroup]; len(g) > 0 || p.GroupsUnchanged > 0 {
		s += fmt.Sprintf(" Groups: %d to create, %d to update, %d to delete, %d skipped, %d invalid, %d unchanged.",
			g[ActionCreate], g[ActionUpdate], g[ActionDelete], g[ActionSkip], g[ActionInvalid], p.GroupsUnchanged)
	}
	return s
}

// WriteJSON prints the plan as one JSON document (format_version 2), streaming its items.
func WriteJSON(w io.Writer, p *Plan) error {
	bw := bufio.NewWriter(w)
	head, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	// the header is the plan's fields; its items follow in the same object
	head = head[:len(head)-2] // drop "\n}"
	bw.Write(head)
	bw.WriteString(",\n  \"items\": [")
	n := 0
	var indented bytes.Buffer
	write := func(raw []byte) error {
		indented.Reset()
		if err := json.Indent(&indented, raw, "    ", "  "); err != nil {
			return err
		}
		if n > 0 {
			bw.WriteString(",")
		}
		bw.WriteString("\n    ")
		bw.Write(indented.Bytes())
		n++
		return nil
	}
	if p.Blocked != nil || p.GroupsBlocked != nil {
		// items carry whether the stop holds them back: decode them to set it
		err = p.Each(func(it Item) error {
			raw, err := json.Marshal(it)
			if err != nil {
				return err
			}
			return write(raw)
		})
	} else {
		err = p.eachRaw(write)
	}
	if err != nil {
		return err
	}
	if n > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]\n}\n")
	return bw.Flush()
}

// ResultLine summarises an applied run.
func ResultLine(r *Result) string {
	var parts []string
	for _, a := range []Action{ActionCreate, ActionUpdate, ActionDisable, ActionDelete} {
		parts = append(parts, fmt.Sprintf("%d %sd", r.Done[a], a))
	}
	s := fmt.Sprintf("Run %d: %s", r.RunID, strings.Join(parts, ", "))
	if g := r.GroupsDone; g[ActionCreate]+g[ActionUpdate]+g[ActionDelete] > 0 {
		s += fmt.Sprintf("; groups: %d created, %d updated, %d deleted", g[ActionCreate], g[ActionUpdate], g[ActionDelete])
	}
	if r.Replanned > 0 {
		s += fmt.Sprintf(", %d planned again (the target refused a stale or unmatched write)", r.Replanned)
	}
	if r.Adopted > 0 {
		s += fmt.Sprintf(", %d adopted (the target already held them)", r.Adopted)
	}
	if len(r.Failed) > 0 {
		s += fmt.Sprintf(", %d failed", len(r.Failed))
	}
	if r.Stopped != "" {
		s += "; stopped: " + r.Stopped
	}
	return s + "."
}
