package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"

	"driftless.dev/synchronizer/internal/inventory"
)

func statusCommand() *cobra.Command {
	var cl clusterFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print a synchronizer's status as recorded in the cluster",
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := storeFor(&cl)
			if err != nil {
				return err
			}
			st, err := store.Read(cmd.Context())
			if err != nil {
				return err
			}
			p := store.Parent()
			if !st.Exists {
				return fmt.Errorf("no synchronizer status in ConfigMap %s/%s: has a synchronizer named %q run against this cluster?", p.Namespace, p.Name, p.Name)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"status": st.Status, "suspended": st.Suspended, "groupKinds": st.GroupKinds, "namespaces": st.Namespaces})
			}
			s := st.Status
			fmt.Fprintf(w, "synchronizer  %s/%s\n", p.Namespace, p.Name)
			fmt.Fprintf(w, "phase         %s (%s)\n", s.Phase, s.Reason)
			fmt.Fprintf(w, "message       %s\n", s.Message)
			fmt.Fprintf(w, "revision      %s\n", s.Revision)
			fmt.Fprintf(w, "applied       %s\n", s.LastAppliedRevision)
			fmt.Fprintf(w, "last sync     %s (%s ago)\n", s.LastSyncTime.Format(time.RFC3339), time.Since(s.LastSyncTime).Round(time.Second))
			var counts []string
			for _, k := range slices.Sorted(maps.Keys(s.Counts)) {
				counts = append(counts, fmt.Sprintf("%s %d", k, s.Counts[k]))
			}
			fmt.Fprintf(w, "objects       %d (last apply: %s)\n", s.Objects, strings.Join(counts, ", "))
			if st.Suspended {
				fmt.Fprintln(w, "suspended     yes (synchronizer resume to continue)")
			}
			return nil
		},
	}
	cl.flags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func suspendCommand(on bool) *cobra.Command {
	var cl clusterFlags
	use, short := "resume", "Resume applying and pruning"
	if on {
		use, short = "suspend", "Stop applying and pruning until resumed (drift is not healed meanwhile)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := storeFor(&cl)
			if err != nil {
				return err
			}
			if err := store.SetSuspended(cmd.Context(), on); err != nil {
				return err
			}
			p := store.Parent()
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s/%s\n", map[bool]string{true: "suspended", false: "resumed"}[on], p.Namespace, p.Name)
			return nil
		},
	}
	cl.flags(cmd.Flags())
	return cmd
}

func storeFor(cl *clusterFlags) (*inventory.Store, error) {
	cfg, err := cl.config()
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return inventory.NewStore(dyn, cl.parent(), "", ""), nil
}
