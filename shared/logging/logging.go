// Package logging builds the zap logger both programs use and routes
// client-go's klog into it, once, from main.
package logging

import (
	"fmt"
	"sync"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// New returns a logger: format "json" (in cluster) or "console" (local),
// level "debug", "info", "warn" or "error".
func New(format, level string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q: want debug, info, warn or error", level)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("--log-format: %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	log, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	// klog is process-wide: the first logger a process builds gets it,
	// before any client runs (a later write would race with clients
	// logging, as a test that runs the program twice in one process does).
	klogOnce.Do(func() { klog.SetLogger(zapr.NewLogger(log.Named("klog"))) })
	return log, nil
}

var klogOnce sync.Once
