package promote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
)

// Trailers of the automator's commits that the revert rule reads and writes.
const (
	imageTrailer    = "Driftless-Image"
	revertTrailer   = "Driftless-Revert"
	revertedTrailer = "Driftless-Reverted-Image"
)

// revert applies the revert rule to head, the followed branch's tip: when
// a cluster's last health record of head is degraded and asks for a
// revert (--revert-on-failure), and head is a commit the scope allows,
// push a revert of it (its parent's tree: Git stays the truth, and the
// synchronizers apply the revert like any commit) and record it.
func (r *Runner) revert(ctx context.Context, l *records.Log, head plumbing.Hash, dryRun bool) *RevertResult {
	last := map[string]records.Record{}
	for _, rec := range l.Of(head.String()) {
		switch rec.Event {
		case records.Healthy, records.Degraded:
			last[rec.Cluster] = rec
		case records.Reverted:
			return nil // done once; the branch was put back since
		}
	}
	var ask *records.Record
	for _, cl := range sortedKeys(last) {
		if rec := last[cl]; rec.Event == records.Degraded && rec.Revert {
			ask = &rec
			break
		}
	}
	if ask == nil {
		return nil
	}
	rr := &RevertResult{Commit: head.String(), Cluster: ask.Cluster, Record: ask.Format()}
	c, err := r.mirror.Commit(head)
	if err != nil {
		rr.Err = err
		return rr
	}
	rr.Images = trailers(c.Message, imageTrailer)
	bump := len(rr.Images) > 0 && strings.EqualFold(c.Author.Email, r.cfg.Author.Email)
	switch {
	case r.cfg.Revert == RevertBumps && !bump:
		rr.Reason = fmt.Sprintf("%s is not a bump this automator made (author %s, %s trailer): --revert=all reverts any commit", short(head.String()), r.cfg.Author.Email, imageTrailer)
		return rr
	case len(c.ParentHashes) == 0:
		rr.Reason = "the first commit of the branch has nothing to go back to"
		return rr
	case dryRun:
		rr.Reason = "a run reverts it"
		return rr
	}
	parent, err := r.mirror.Commit(c.ParentHashes[0])
	if err != nil {
		rr.Err = err
		return rr
	}
	rev, err := r.mirror.NewCommit(parent.TreeHash, []plumbing.Hash{head}, revertMessage(c, ask, rr.Images), r.cfg.Author, r.cfg.SignKey)
	if err != nil {
		rr.Err = err
		return rr
	}
	err = r.mirror.Push(ctx, rev, gitrepo.BranchRef(r.cfg.Branch))
	if errors.Is(err, gitrepo.ErrRejected) {
		rr.Reason = "the branch moved on meanwhile: its new head is judged on its own records"
		return rr
	}
	if err != nil {
		rr.Err = err
		return rr
	}
	rr.Revert = rev.String()
	rec := records.Record{Time: r.cfg.Now().UTC(), Event: records.Reverted, Commit: rev.String(), Images: rr.Images, By: r.cfg.Author.Name,
		Message: fmt.Sprintf("rollout failed in %s: %s", ask.Cluster, ask.Message)}
	if _, err := r.notes.Append(ctx, map[plumbing.Hash][]string{head: {rec.Format()}}, gitrepo.AppendOptions{
		Author: r.cfg.Author, SignKey: r.cfg.SignKey, Message: "Deployment record: reverted " + short(head.String())}); err != nil {
		// The revert's own trailers keep its images from being chosen
		// again (see Skipped); the record is what history misses.
		rr.Err = fmt.Errorf("revert %s pushed, its record not written: %w", short(rev.String()), err)
	}
	return rr
}

func revertMessage(c *object.Commit, ask *records.Record, images []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Revert %q\n\n", firstLine(c.Message))
	fmt.Fprintf(&b, "This reverts commit %s: its rollout failed in %s.\n\n", c.Hash, ask.Cluster)
	fmt.Fprintf(&b, "Record: %s\n\n", ask.Format())
	fmt.Fprintf(&b, "%s: %s\n", revertTrailer, c.Hash)
	for _, img := range images {
		fmt.Fprintf(&b, "%s: %s\n", revertedTrailer, img)
	}
	return b.String()
}

// trailers returns the values of key in msg's trailer lines.
func trailers(msg, key string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(line, key+": "); ok && strings.TrimSpace(v) != "" {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
