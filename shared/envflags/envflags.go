// Package envflags gives every flag of a command an environment variable
// fallback: --git-url is DRIFTLESS_GIT_URL. An explicit flag always wins,
// and a bad value names the variable it came from.
package envflags

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Key is the variable that backs flag name.
func Key(name string) string {
	return "DRIFTLESS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Hook is a PersistentPreRunE that fills every flag not given on the
// command line from env (os.LookupEnv, or a map in tests).
func Hook(env func(string) (string, bool)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		var err error
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Changed || err != nil {
				return
			}
			key := Key(f.Name)
			if v, ok := env(key); ok {
				if e := f.Value.Set(v); e != nil {
					err = fmt.Errorf("%s: %w", key, e)
				}
			}
		})
		return err
	}
}
