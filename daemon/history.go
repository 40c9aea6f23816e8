package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/scimsync/scimsync/state"
	"github.com/scimsync/scimsync/sync"
)

// ReportFormatVersion is the version of a run report file and of `runs show -o json`.
const ReportFormatVersion = 1

// RunReport is one run with its change log: `scimsync runs show N`, GET /runs/{id}, and the
// file written to state.report_dir after each run.
type RunReport struct {
	FormatVersion int                  `json:"format_version"`
	Run           state.Run            `json:"run"`
	Changes       []state.HistoryEntry `json:"changes"`
}

// LoadRunReport reads run id and its change log.
func LoadRunReport(st *state.Store, id uint64) (*RunReport, error) {
	r, err := st.Run(id)
	if err != nil {
		return nil, err
	}
	chs, err := st.RunChanges(id)
	if err != nil {
		return nil, err
	}
	return &RunReport{FormatVersion: ReportFormatVersion, Run: r, Changes: chs}, nil
}

// failedChanges turns the writes of res that failed into change-log entries carrying the
// plan's diffs and the error, so `history USER` shows what was tried and why it failed.
func failedChanges(plan *sync.Plan, res *sync.Result, at time.Time) []state.Change {
	if plan == nil || res == nil || len(res.Failed) == 0 {
		return nil
	}
	out := make([]state.Change, 0, len(res.Failed))
	for _, f := range res.Failed {
		kind := state.LinkUser
		if f.Kind == sync.KindGroup {
			kind = state.LinkGroup
		}
		ch := state.Change{At: at.UTC(), Kind: kind, Action: string(f.Action), ExternalID: f.ExternalID, UserName: f.UserName,
			TargetID: f.TargetID, By: "sync", Error: f.Error}
		if len(f.Changes) > 0 {
			ch.Old, ch.New = map[string]string{}, map[string]string{}
			for _, d := range f.Changes {
				ch.Old[d.Attribute], ch.New[d.Attribute] = d.Old, d.New
			}
		}
		out = append(out, ch)
	}
	return out
}

// Bookkeep is what follows every recorded run, in the daemon and in `scimsync sync`: the failed
// writes go into the change log, the run's report file is written (state.report_dir), and
// history older than state.history_retention is pruned with its report files. Every step is
// tried; the errors are joined.
func Bookkeep(st *state.Store, cfg state.Config, plan *sync.Plan, res *sync.Result, now time.Time) error {
	var errs []error
	if res != nil {
		if err := st.RecordFailures(res.RunID, failedChanges(plan, res, now)); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.ReportDir != "" {
		if runs, err := st.Runs(1); err != nil {
			errs = append(errs, err)
		} else if len(runs) > 0 {
			errs = append(errs, writeReport(st, cfg.ReportDir, runs[0].ID))
		}
	}
	if ret := cfg.HistoryRetention.D(); ret > 0 {
		pr, err := st.Prune(now.Add(-ret))
		errs = append(errs, err)
		if cfg.ReportDir != "" {
			for _, id := range pr.Runs {
				if err := os.Remove(reportPath(cfg.ReportDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("report: %w", err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func reportPath(dir string, id uint64) string {
	return filepath.Join(dir, fmt.Sprintf("run-%06d.json", id))
}

// writeReport writes run id's report atomically (a reader never sees half a file), readable by
// the service user only: it names people and their attributes.
func writeReport(st *state.Store, dir string, id uint64) error {
	rep, err := LoadRunReport(st, id)
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report: encode run %d: %w", id, err)
	}
	tmp, err := os.CreateTemp(dir, ".run-*.json")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(append(raw, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("report: write run %d: %w", id, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("report: write run %d: %w", id, err)
	}
	if err := os.Rename(tmp.Name(), reportPath(dir, id)); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
