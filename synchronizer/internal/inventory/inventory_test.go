package inventory

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"driftless.dev/synchronizer/internal/apply"
)

// The id is the one kubectl computes for a ConfigMap parent
// (ComputeApplySetID in k8s.io/kubectl/pkg/cmd/apply/applyset.go), so
// kubectl sees the same set.
func TestIDFollowsKEP3659(t *testing.T) {
	p := Parent{Namespace: "driftless-system", Name: "driftless"}
	// Computed apart from this code: base64url(sha256("driftless.driftless-system.ConfigMap.")).
	if got, want := p.ID(), "applyset-5MmHDQUOBmKl1FEj0YVpNSJFl0LXeljxmK5ROS1F0Pk-v1"; got != want {
		t.Fatalf("id %q, want %q", got, want)
	}
	if p.ID() == (Parent{Namespace: "other", Name: "driftless"}).ID() {
		t.Fatal("two parents share an id")
	}
}

func TestStatusRoundTripAndEquality(t *testing.T) {
	s := Status{Phase: Ready, Reason: "Applied", Message: "m", Revision: "main@sha1:1", LastAppliedRevision: "main@sha1:1",
		LastSyncTime: time.Date(2026, 11, 25, 1, 2, 3, 0, time.UTC), Objects: 3, Counts: map[string]int{"created": 2, "pruned": 1}}
	got := decode(encode(s))
	if !got.Equal(s) || !got.LastSyncTime.Equal(s.LastSyncTime) {
		t.Fatalf("round trip: %+v", got)
	}
	later := s
	later.LastSyncTime = s.LastSyncTime.Add(time.Hour)
	if !later.Equal(s) {
		t.Fatal("a new sync time alone must not count as a change (no write on a quiet pass)")
	}
	later.Counts = map[string]int{"created": 3}
	if later.Equal(s) {
		t.Fatal("different counts compared equal")
	}
}

// Members survive the trip through the ConfigMap, in one order, and
// 10,000 of them fit with room to spare.
func TestMembersRoundTrip(t *testing.T) {
	var ms []apply.Member
	for i := range 10000 {
		ms = append(ms, apply.Member{Key: apply.Key{Kind: "ConfigMap", Namespace: "team-" + strconv.Itoa(i%50), Name: "cm-" + strconv.Itoa(i)}})
	}
	ms = append(ms, apply.Member{Key: apply.Key{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition", Name: "widgets.example.com"}, Prune: "enabled"})
	enc, err := encodeMembers(ms)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > 300<<10 {
		t.Fatalf("10,001 members take %d bytes", len(enc))
	}
	got, err := decodeMembers(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(ms)
	apply.SortMembers(want)
	if !slices.Equal(got, want) {
		t.Fatalf("round trip lost members: %d of %d", len(got), len(want))
	}
	again, _ := encodeMembers(got)
	if again != enc {
		t.Fatal("equal members encode to different bytes: every pass would write")
	}
	if _, err := decodeMembers("not base64!"); err == nil {
		t.Fatal("garbage decoded")
	}
}
