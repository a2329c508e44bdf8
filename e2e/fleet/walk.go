package fleet

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Timings of one trip through the loop, each from the tag push.
type Timings struct {
	Commit, DevApplied, DevRolledOut, ProdApplied, ProdRolledOut time.Duration
	// BumpCommit and MergeCommit are the automator's and the promotion's.
	BumpCommit, MergeCommit string
}

// Ready waits until both synchronizers have applied their branch and the
// application has rolled out in both clusters.
func (f *Fleet) Ready(ctx context.Context, timeout time.Duration) error {
	for _, c := range Clusters {
		head := f.Head(ctx, c)
		if err := Until(ctx, timeout, "the "+c+" synchronizer to apply "+c, func() bool {
			st := f.Status("sync-" + c)
			return st.Status.LastAppliedRevision == c+"@sha1:"+head && st.Status.Phase == "Ready"
		}); err != nil {
			return fmt.Errorf("%w (status: %+v)", err, f.Status("sync-"+c).Status)
		}
		if err := Until(ctx, timeout, "web to roll out in "+c, func() bool { return f.Web(ctx, c).Done }); err != nil {
			return err
		}
	}
	return nil
}

// Walk pushes tag and follows it through the loop: the automator's
// commit on dev, dev applied and rolled out, prod untouched, the merge of
// dev into prod, prod applied and rolled out.
func (f *Fleet) Walk(ctx context.Context, tag string, timeout time.Duration) (Timings, error) {
	var t Timings
	want := f.Registry.Host + "/" + Image + ":" + tag
	before := f.Head(ctx, "dev")
	prodBefore := f.Web(ctx, "prod").Image

	f.say("pushing %s", want)
	t0 := time.Now()
	if _, err := f.Registry.PushImages(ctx, Image, tag); err != nil {
		return t, err
	}
	f.say("pushed in %s; the registry notifies the automator", since(t0))
	start := time.Now()

	if err := Until(ctx, timeout, "the automator's commit on dev", func() bool { return f.Head(ctx, "dev") != before }); err != nil {
		return t, err
	}
	t.Commit = time.Since(start)
	t.BumpCommit = f.Head(ctx, "dev")
	f.say("%s  the automator committed %s to dev:\n%s", stamp(t.Commit), short(t.BumpCommit), indent(f.Show(ctx, t.BumpCommit)))

	if err := Until(ctx, timeout, "the dev synchronizer to apply the bump", func() bool {
		return f.Status("sync-dev").Status.LastAppliedRevision == "dev@sha1:"+t.BumpCommit
	}); err != nil {
		return t, err
	}
	t.DevApplied = time.Since(start)
	f.say("%s  the dev synchronizer applied dev@%s (server-side apply; status %s)", stamp(t.DevApplied), short(t.BumpCommit), f.Status("sync-dev").Status.Phase)

	if err := Until(ctx, timeout, "web to roll out "+tag+" in dev", func() bool {
		r := f.Web(ctx, "dev")
		return r.Image == want && r.Done
	}); err != nil {
		return t, err
	}
	t.DevRolledOut = time.Since(start)
	r := f.Web(ctx, "dev")
	f.say("%s  web rolled out in dev: %d/%d replicas on %s", stamp(t.DevRolledOut), r.Ready, r.Replicas, r.Image)

	if got := f.Web(ctx, "prod").Image; got != prodBefore {
		return t, fmt.Errorf("prod changed before the promotion: %s", got)
	}
	f.say("           prod still runs %s: it follows the prod branch, which has not moved", prodBefore)

	if err := f.promote(ctx, &t, start, timeout); err != nil {
		return t, err
	}
	merge := t.MergeCommit

	if err := Until(ctx, timeout, "the prod synchronizer to apply the merge", func() bool {
		return f.Status("sync-prod").Status.LastAppliedRevision == "prod@sha1:"+merge
	}); err != nil {
		return t, err
	}
	t.ProdApplied = time.Since(start)
	f.say("%s  the prod synchronizer applied prod@%s", stamp(t.ProdApplied), short(merge))
	if err := Until(ctx, timeout, "web to roll out "+tag+" in prod", func() bool {
		r := f.Web(ctx, "prod")
		return r.Image == want && r.Done
	}); err != nil {
		return t, err
	}
	t.ProdRolledOut = time.Since(start)
	r = f.Web(ctx, "prod")
	f.say("%s  web rolled out in prod: %d/%d replicas on %s", stamp(t.ProdRolledOut), r.Ready, r.Replicas, r.Image)
	return t, nil
}

// promote merges dev into prod by hand, as a reviewed pull request would,
// or, with a gate, waits for the automator's merge once dev's records say
// the bump was healthy for the soak time.
func (f *Fleet) promote(ctx context.Context, t *Timings, start time.Time, timeout time.Duration) error {
	if f.opts.Soak == 0 {
		merge, err := f.Promote(ctx)
		t.MergeCommit = merge
		f.say("%s  merged dev into prod (%s), as a reviewed pull request would", stamp(time.Since(start)), short(merge))
		return err
	}
	before := f.Head(ctx, "prod")
	f.say("           the gate dev-to-prod waits until dev's records say %s was healthy there for %s:", short(t.BumpCommit), f.opts.Soak)
	if err := Until(ctx, timeout, "the automator's merge into prod", func() bool { return f.Head(ctx, "prod") != before }); err != nil {
		return err
	}
	t.MergeCommit = f.Head(ctx, "prod")
	notes, _ := f.Git.Git(ctx, Repo, "notes", "--ref=driftless", "show", t.BumpCommit)
	f.say("%s  the dev synchronizer's records on %s (git notes --ref=driftless show):\n%s", stamp(time.Since(start)), short(t.BumpCommit), indent(notes))
	msg, _ := f.Git.Git(ctx, Repo, "log", "-1", "--format=%an: %B", t.MergeCommit)
	f.say("%s  the automator merged dev into prod (%s), fast-forward only, after the soak:\n%s", stamp(time.Since(start)), short(t.MergeCommit), indent(strings.TrimSpace(msg)))
	return nil
}

func stamp(d time.Duration) string { return fmt.Sprintf("[+%6.2fs]", d.Seconds()) }

func short(h string) string {
	if len(h) > 10 {
		return h[:10]
	}
	return h
}

// Explore is what to try once the demo is up.
func (f *Fleet) Explore(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Everything keeps running. To explore:\n\n")
	for _, c := range Clusters {
		fmt.Fprintf(&b, "  export KUBECONFIG=%s   # the %s cluster, as admin\n", f.Clusters[c].Kubeconfig, c)
		fmt.Fprintf(&b, "  kubectl -n web get deploy,pods -o wide\n")
		fmt.Fprintf(&b, "  kubectl -n driftless-system get configmap driftless -o yaml   # the %s synchronizer's status\n", c)
		if f.opts.InCluster {
			fmt.Fprintf(&b, "  kubectl -n driftless-system get pods,lease -o wide; kubectl -n driftless-system logs deploy/driftless-synchronizer\n")
			fmt.Fprintf(&b, "  curl -s http://%s/status   # the synchronizer's Service (a NodePort): either replica\n\n", f.Listen["sync-"+c])
			continue
		}
		fmt.Fprintf(&b, "  curl -s http://%s/status; curl -s http://%s/metrics | grep ^driftless_\n\n", f.Listen["sync-"+c], f.Listen["sync-"+c])
	}
	fmt.Fprintf(&b, "  git clone %s   # user %s, token in %s/git-token\n", f.Git.RepoURL(Repo), gitUser, dir)
	fmt.Fprintf(&b, "  git log --oneline --graph origin/dev origin/prod\n")
	fmt.Fprintf(&b, "  curl -s http://%s/metrics | grep ^driftless_automator_\n", f.Listen["automator"])
	fmt.Fprintf(&b, "  curl -s http://%s/v2/%s/tags/list   # the tags in the registry\n\n", f.Registry.Host, Image)
	fmt.Fprintf(&b, "Logs are in %s. Stop everything with: make demo-down\n", dir)
	return b.String()
}
