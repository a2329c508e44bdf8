package web

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Commit is one commit of the followed branch.
type Commit struct {
	Hash    string    `json:"hash"`
	Author  string    `json:"author"`
	Email   string    `json:"email"`
	When    time.Time `json:"when"`
	Subject string    `json:"subject"`
	Message string    `json:"message"`
}

func commitFrom(c *object.Commit) Commit {
	msg := strings.TrimSpace(c.Message)
	subject, _, _ := strings.Cut(msg, "\n")
	return Commit{Hash: c.Hash.String(), Author: c.Author.Name, Email: c.Author.Email, When: c.Author.When, Subject: subject, Message: msg}
}

// readCommit reads one commit of the checkout in dir.
func readCommit(dir, hash string) (Commit, error) {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return Commit{}, fmt.Errorf("open the checkout: %w", err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return Commit{}, fmt.Errorf("commit %s: %w", hash, err)
	}
	return commitFrom(c), nil
}

// readLog walks the first-parent history from hash in the checkout in dir,
// up to max commits. The synchronizer fetches with depth 1 unless a commit
// is pinned, so the walk usually ends at the shallow boundary after one
// commit: shallow says so, and the log is what the checkout holds.
func readLog(dir, hash string, max int) (log []Commit, shallow bool, err error) {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return nil, false, fmt.Errorf("open the checkout: %w", err)
	}
	bounds, _ := repo.Storer.Shallow()
	boundary := map[plumbing.Hash]bool{}
	for _, b := range bounds {
		boundary[b] = true
	}
	c, err := repo.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		return nil, false, fmt.Errorf("commit %s: %w", hash, err)
	}
	for len(log) < max {
		log = append(log, commitFrom(c))
		if boundary[c.Hash] {
			return log, true, nil
		}
		if c.NumParents() == 0 {
			return log, false, nil
		}
		next, err := c.Parent(0)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return log, true, nil
		}
		if err != nil {
			return log, false, fmt.Errorf("parent of %s: %w", c.Hash, err)
		}
		c = next
	}
	return log, false, nil
}
