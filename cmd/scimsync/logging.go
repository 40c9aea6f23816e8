package main

import (
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/scimsync/scimsync/config"
)

// newLeveledLogger builds the zap logger the config asks for, and returns its level, which
// the daemon changes at run time. Console format on a terminal when no format is set. When w
// is systemd's journal stream, every line starts with its syslog priority ("<3>" for errors),
// which journald turns into the entry's priority, so `journalctl -p err` finds the errors.
func newLeveledLogger(cfg logConfig, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(cfg.Level)
	if err != nil {
		return nil, lvl, fmt.Errorf("log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	format := cfg.Format
	if format == "" {
		format = "json"
		if isTerminal(w) {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	if onJournal(w) {
		enc = priorityEncoder{Encoder: enc, pool: buffer.NewPool()}
	}
	// every secret of the config file is redacted from every line, whatever logs it
	return zap.New(config.RedactCore(zapcore.NewCore(enc, zapcore.AddSync(w), lvl), cfg.redact)), lvl, nil
}

// onJournal reports whether w is the stream systemd connected to the journal: JOURNAL_STREAM
// holds that stream's "device:inode" (it is inherited by children whose output goes elsewhere,
// hence the comparison).
func onJournal(w io.Writer) bool {
	want := os.Getenv("JOURNAL_STREAM")
	f, ok := w.(*os.File)
	if want == "" || !ok {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino) == want
}

// syslogPriority maps zap levels to the sd-daemon(3) prefixes.
func syslogPriority(l zapcore.Level) string {
	switch {
	case l >= zapcore.DPanicLevel:
		return "<2>"
	case l == zapcore.ErrorLevel:
		return "<3>"
	case l == zapcore.WarnLevel:
		return "<4>"
	case l == zapcore.InfoLevel:
		return "<6>"
	}
	return "<7>"
}

// priorityEncoder puts the syslog priority in front of every encoded entry.
type priorityEncoder struct {
	zapcore.Encoder
	pool buffer.Pool
}

func (e priorityEncoder) Clone() zapcore.Encoder {
	return priorityEncoder{Encoder: e.Encoder.Clone(), pool: e.pool}
}

func (e priorityEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	line, err := e.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return nil, err
	}
	out := e.pool.Get()
	out.AppendString(syslogPriority(ent.Level))
	_, _ = out.Write(line.Bytes())
	line.Free()
	return out, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
