package web

import (
	"github.com/pmezard/go-difflib/difflib"
)

// Row is one line of a side-by-side diff. Op is "equal", "change",
// "delete" (only on the left, live), "insert" (only on the right, Git) or
// "skip" (Skipped unchanged lines left out).
type Row struct {
	Op      string `json:"op"`
	LeftNo  int    `json:"leftNo,omitempty"`
	Left    string `json:"left,omitempty"`
	RightNo int    `json:"rightNo,omitempty"`
	Right   string `json:"right,omitempty"`
	Skipped int    `json:"skipped,omitempty"`
}

// sideBySideContext is how many unchanged lines surround a change.
const sideBySideContext = 4

// sideBySide aligns live and git (diff.Object's YAML) line by line, for
// the coloured two-column view. It adds nothing to the diff: the same two
// texts as the unified diff, laid out side by side.
func sideBySide(live, git string) []Row {
	a, b := difflib.SplitLines(live), difflib.SplitLines(git)
	if live == "" {
		a = nil
	}
	if git == "" {
		b = nil
	}
	trim := func(s string) string {
		if n := len(s); n > 0 && s[n-1] == '\n' {
			return s[:n-1]
		}
		return s
	}
	var rows []Row
	m := difflib.NewMatcher(a, b)
	groups := m.GetGroupedOpCodes(sideBySideContext)
	prevA := 0
	for gi, g := range groups {
		if first := g[0]; first.I1 > prevA {
			rows = append(rows, Row{Op: "skip", Skipped: first.I1 - prevA})
		}
		for _, op := range g {
			switch op.Tag {
			case 'e':
				for i, j := op.I1, op.J1; i < op.I2; i, j = i+1, j+1 {
					rows = append(rows, Row{Op: "equal", LeftNo: i + 1, Left: trim(a[i]), RightNo: j + 1, Right: trim(b[j])})
				}
			case 'd':
				for i := op.I1; i < op.I2; i++ {
					rows = append(rows, Row{Op: "delete", LeftNo: i + 1, Left: trim(a[i])})
				}
			case 'i':
				for j := op.J1; j < op.J2; j++ {
					rows = append(rows, Row{Op: "insert", RightNo: j + 1, Right: trim(b[j])})
				}
			case 'r':
				n := max(op.I2-op.I1, op.J2-op.J1)
				for k := 0; k < n; k++ {
					row := Row{Op: "change"}
					if i := op.I1 + k; i < op.I2 {
						row.LeftNo, row.Left = i+1, trim(a[i])
					}
					if j := op.J1 + k; j < op.J2 {
						row.RightNo, row.Right = j+1, trim(b[j])
					}
					rows = append(rows, row)
				}
			}
		}
		prevA = g[len(g)-1].I2
		if gi == len(groups)-1 && prevA < len(a) {
			rows = append(rows, Row{Op: "skip", Skipped: len(a) - prevA})
		}
	}
	return rows
}
