package xds

import (
	"context"
	"fmt"
	"log/slog"
)

// gcpLogger adapts slog to go-control-plane's logger. go-control-plane logs
// every watch it opens at info; that is per-request noise for us, so info
// becomes debug and sluice stays quiet at info.
type gcpLogger struct{ l *slog.Logger }

func (g gcpLogger) Debugf(format string, args ...any) { g.log(slog.LevelDebug, format, args) }
func (g gcpLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, format, args) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.log(slog.LevelWarn, format, args) }
func (g gcpLogger) Errorf(format string, args ...any) { g.log(slog.LevelError, format, args) }

func (g gcpLogger) log(level slog.Level, format string, args []any) {
	// Formatting is the expensive part; skip it when the level is off.
	if !g.l.Enabled(context.Background(), level) {
		return
	}
	g.l.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "go-control-plane")
}
