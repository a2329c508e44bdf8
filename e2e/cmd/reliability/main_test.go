package main

import (
	"strings"
	"testing"
)

// TestTable: rows reported by tests, the census, recovery and fuzz seeds
// are counted once each, failures are lost and listed, and a census
// short of its minimum counts the shortfall as lost.
func TestTable(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"output","Package":"driftless.dev/e2e","Test":"TestReliabilityKills","Output":"    reliability_test.go:9: RELIABILITY {\"scenario\":\"kill -9 automator\",\"tried\":24,\"lost\":0,\"seed\":7}\n"}`,
		`{"Action":"pass","Package":"driftless.dev/automator/internal/policy","Test":"TestBadInputPolicies/no_image"}`,
		`{"Action":"pass","Package":"driftless.dev/automator/internal/policy","Test":"TestBadInputPolicies/no_image"}`,
		`{"Action":"pass","Package":"driftless.dev/e2e","Test":"TestBadInputFlags/x"}`,
		`{"Action":"fail","Package":"p/policy","Test":"TestBadInputPolicies/bad_range"}`,
		`{"Action":"fail","Package":"p/policy","Test":"TestBadInputPolicies"}`,
		`{"Action":"pass","Package":"p/update","Test":"TestBadInputMarkers/a_marker_on_a_key"}`,
		`{"Action":"pass","Package":"p/gitrepo","Test":"TestWarmCloneRecoversFromAKill/HEAD_emptied"}`,
		`{"Action":"pass","Package":"p/policy","Test":"FuzzSelect/ties"}`,
		`{"Action":"pass","Package":"p/policy","Test":"FuzzSelect"}`,
		`not json: build output`,
	}, "\n")
	rows, failed, err := read(strings.NewReader(in), 5)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int{}
	for _, r := range rows {
		got[strings.SplitN(r.Scenario, ":", 2)[0]] = [2]int{r.Tried, r.Lost}
	}
	want := map[string][2]int{
		"kill -9 automator": {24, 0},
		"bad input":         {4, 1 + 1}, // one failed, one short of 5
		"recovery from every state a kill leaves in a clone or checkout": {1, 0},
		"fuzzing": {1, 0},
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: tried, lost = %v, want %v (rows %+v)", k, got[k], v, rows)
		}
	}
	if len(failed) != 1 || failed[0] != "p/policy.TestBadInputPolicies" {
		t.Fatalf("failed %v", failed)
	}
	for _, r := range rows {
		if strings.HasPrefix(r.Scenario, "bad input") && !strings.Contains(r.Detail, "automator/policy 1") || strings.HasPrefix(r.Scenario, "bad input") && !strings.Contains(r.Detail, "e2e flags 1") {
			t.Errorf("bad input by area: %s", r.Detail)
		}
	}
	var b strings.Builder
	print(&b, rows, "7")
	if !strings.Contains(b.String(), "seed 7 (make reliability SEED=7 replays it)") || !strings.Contains(b.String(), "kill -9 automator") {
		t.Fatalf("table:\n%s", b.String())
	}
}
