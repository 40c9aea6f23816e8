package sync

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints the plan as a per-user table with attribute diffs and a summary line.
func WriteText(w io.Writer, p *Plan) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(p.Items) > 0 {
		fmt.Fprintln(tw, "ACTION\tUSER\tDETAIL")
	}
	for _, it := range p.Items {
		action := string(it.Action)
		if it.Adopt {
			action += " (adopt)"
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
		user := it.UserName
		if user == "" {
			user = "-" // an entry that could not be mapped has no userName yet
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", action, user, detail)
		for _, d := range it.Changes {
			fmt.Fprintf(tw, "\t\t  %s: %s → %s\n", d.Attribute, quote(d.Old), quote(d.New))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if p.Blocked != nil {
		fmt.Fprintf(w, "STOPPED: %s\n", p.Blocked.Message)
	}
	_, err := fmt.Fprintln(w, SummaryLine(p))
	return err
}

func quote(s string) string {
	if s == "" {
		return "(none)"
	}
	return fmt.Sprintf("%q", s)
}

// SummaryLine is the one-line count of the plan.
func SummaryLine(p *Plan) string {
	return fmt.Sprintf("Plan: %d to create, %d to update, %d to disable, %d to delete, %d skipped, %d invalid, %d unchanged "+
		"(directory %d, target %d, managed %d).",
		p.Summary[ActionCreate], p.Summary[ActionUpdate], p.Summary[ActionDisable], p.Summary[ActionDelete],
		p.Summary[ActionSkip], p.Summary[ActionInvalid], p.Unchanged, p.Source, p.Target, p.Known)
}

// WriteJSON prints the plan as JSON (format_version 1).
func WriteJSON(w io.Writer, p *Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// ResultLine summarises an applied run.
func ResultLine(r *Result) string {
	var parts []string
	for _, a := range []Action{ActionCreate, ActionUpdate, ActionDisable, ActionDelete} {
		parts = append(parts, fmt.Sprintf("%d %sd", r.Done[a], a))
	}
	s := fmt.Sprintf("Run %d: %s", r.RunID, strings.Join(parts, ", "))
	if len(r.Failed) > 0 {
		s += fmt.Sprintf(", %d failed", len(r.Failed))
	}
	return s + "."
}
