package build

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/resource"

	"driftless.dev/shared/redact"
	"driftless.dev/synchronizer/internal/checkoutfs"
)

// explainKustomize turns a krusty error into a message for people: a
// refused remote file, a Helm chart or a tab is named with its file and
// field; otherwise Kustomize's words, prefixed with the path built. Paths
// are the repository's, and values from the files read are blanked out.
func explainKustomize(err error, dir string, t trail) string {
	msg := checkoutfs.Message(err.Error())
	reads := t.reads
	if m, ok := remoteMessage(msg, reads, t.refused); ok {
		return scrub(m, reads)
	}
	if m, ok := refusalMessage(msg, reads, t.refusals); ok {
		return scrub(m, reads)
	}
	if strings.Contains(msg, "must specify --enable-helm") {
		return scrub(helmMessage(reads), reads)
	}
	if m, ok := tabMessage(msg, reads); ok {
		return scrub(m, reads)
	}
	return scrub("kustomize build "+dir+": "+msg, reads)
}

// trail is what a build did, for its messages.
type trail struct {
	reads    []checkoutfs.Read
	refused  []string                // URLs the transport refused
	refusals []*checkoutfs.PathError // paths the file system refused
}

// refusalMessage names the field whose path escaped the checkout or
// reached into .git: Kustomize buries it in its loader's words.
func refusalMessage(msg string, reads []checkoutfs.Read, refusals []*checkoutfs.PathError) (string, bool) {
	if len(refusals) == 0 {
		return "", false
	}
	pe := refusals[0]
	if !strings.Contains(msg, pe.Err.Error()) {
		return "", false // Kustomize went past it: not why it failed
	}
	reason := pe.Err.Error()
	if pe.Link != "" {
		reason = "symbolic link " + pe.Link + " " + reason
	}
	// The entry whose path is the one refused, else one Kustomize quotes.
	for _, exact := range []bool{true, false} {
		for _, r := range reads {
			for _, loc := range scalars(r) {
				v := loc.value
				if v == "" || strings.Contains(v, "\n") {
					continue
				}
				if exact && path.Clean(path.Join(path.Dir(r.Path), v)) == pe.Path ||
					!exact && (strings.Contains(msg, "'"+v+"'") || strings.Contains(msg, `"`+v+`"`)) {
					return fmt.Sprintf("%s: %s %q: %s", r.Path, loc.field, v, reason), true
				}
			}
		}
	}
	return "", false
}

// explain is the same for Driftless's own errors: repository paths and
// no values.
func explain(err error, reads []checkoutfs.Read) string {
	return scrub(checkoutfs.Message(err.Error()), reads)
}

// remoteMessage names the field that holds a URL the build refused to
// fetch (or a git URL it could not clone: there is no git in a build).
func remoteMessage(msg string, reads []checkoutfs.Read, refused []string) (string, bool) {
	gitRefused := strings.Contains(msg, "no 'git' program on path")
	if len(refused) == 0 && !gitRefused && !strings.Contains(msg, errRemote.Error()) {
		return "", false
	}
	for _, r := range reads {
		for _, loc := range scalars(r) {
			if !remoteLike(loc.value) {
				continue
			}
			if !slices.Contains(refused, loc.value) && !strings.Contains(msg, loc.value) {
				continue
			}
			return fmt.Sprintf("%s: %s %q: %v", r.Path, loc.field, redact.UserInfo(loc.value), errRemote), true
		}
	}
	// Kustomize does not always say which git URL it could not clone:
	// the last file read that holds one is where the build stopped.
	for i := len(reads) - 1; gitRefused && i >= 0; i-- {
		for _, loc := range scalars(reads[i]) {
			if remoteLike(loc.value) {
				return fmt.Sprintf("%s: %s %q: %v", reads[i].Path, loc.field, redact.UserInfo(loc.value), errRemote), true
			}
		}
	}
	for _, u := range refused {
		return fmt.Sprintf("%q: %v", redact.UserInfo(u), errRemote), true
	}
	return "remote bases are not fetched: " + errRemote.Error(), true
}

var scpLike = regexp.MustCompile(`^[\w.-]+@[\w.-]+:`)

// remoteLike is a path Kustomize would fetch rather than read: a URL, a
// git spelling, a host path.
func remoteLike(s string) bool {
	if strings.ContainsAny(s, "\n ") {
		return false
	}
	l := strings.ToLower(s)
	for _, p := range []string{"git::", "gh:", "git@", "github.com/", "gitlab.com/", "bitbucket.org/"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return strings.Contains(l, "://") || scpLike.MatchString(s)
}

// helmMessage says what is true about Helm charts, naming where one is.
func helmMessage(reads []checkoutfs.Read) string {
	const why = "Helm charts are not rendered by Driftless: render the chart into Git (helm template) and list the output under resources"
	for _, r := range reads {
		for _, loc := range scalars(r) {
			top := strings.SplitN(loc.field, ".", 2)[0]
			top = strings.SplitN(top, "[", 2)[0]
			switch {
			case isKustomizationFile(r.Path) && (top == "helmCharts" || top == "helmChartInflationGenerator" || top == "helmGlobals"):
				return fmt.Sprintf("%s: %s: %s", r.Path, top, why)
			case loc.field == "kind" && loc.value == "HelmChartInflationGenerator":
				return fmt.Sprintf("%s: kind HelmChartInflationGenerator: %s", r.Path, why)
			}
		}
	}
	return why
}

// tabMessage names the file and line of a tab that broke YAML parsing.
func tabMessage(msg string, reads []checkoutfs.Read) (string, bool) {
	if !strings.Contains(msg, "found character that cannot start any token") {
		return "", false
	}
	for i := len(reads) - 1; i >= 0; i-- {
		if n, ok := tabLine(msg, reads[i].Data); ok {
			return fmt.Sprintf("%s: line %d: tab character: YAML indents with spaces", reads[i].Path, n), true
		}
	}
	return "", false
}

func isKustomizationFile(p string) bool {
	return slices.Contains(konfig.RecognizedKustomizationFileNames(), path.Base(p))
}

// location is a scalar value of a YAML file and the field that holds it.
type location struct {
	field string // patches[0].path
	value string
}

// scalars lists the scalar values of every document of a file read, with
// their fields. A file that is not YAML has none.
func scalars(r checkoutfs.Read) []location {
	var out []location
	dec := yamlv3.NewDecoder(bytes.NewReader(r.Data))
	for doc := 1; ; doc++ {
		var n yamlv3.Node
		if err := dec.Decode(&n); err != nil {
			return out
		}
		prefix := ""
		if doc > 1 {
			prefix = "document " + strconv.Itoa(doc) + ": "
		}
		walkScalars(&n, "", func(field string, v *yamlv3.Node) {
			out = append(out, location{field: prefix + field, value: v.Value})
		})
	}
}

func walkScalars(n *yamlv3.Node, field string, fn func(string, *yamlv3.Node)) {
	switch n.Kind {
	case yamlv3.DocumentNode:
		for _, c := range n.Content {
			walkScalars(c, field, fn)
		}
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if field != "" {
				k = field + "." + k
			}
			walkScalars(n.Content[i+1], k, fn)
		}
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			walkScalars(c, fmt.Sprintf("%s[%d]", field, i), fn)
		}
	case yamlv3.ScalarNode:
		fn(field, n)
	}
}

// Values never appear in a build's errors: every value of every file the
// build read is blanked out of its messages, except the ones that say
// which object or file is meant (apiVersion, kind, names, namespaces,
// paths). Inside Secret data, generator literals and inline patches,
// nothing is kept. Short values (under four characters) and booleans are
// left: blanking them would garble messages ("line 1") and hide nothing.

// shown are the fields whose values identify rather than configure.
var shown = map[string]bool{
	"apiVersion": true, "kind": true, "name": true, "namespace": true, "group": true, "version": true,
	"path": true, "resources": true, "bases": true, "components": true, "crds": true, "configurations": true,
	"generators": true, "transformers": true, "validators": true, "files": true, "envs": true, "env": true,
	"namePrefix": true, "nameSuffix": true, "patchesStrategicMerge": true,
}

// hidden are the fields under which everything is a value.
var hidden = map[string]bool{"data": true, "stringData": true, "binaryData": true, "literals": true, "patch": true, "value": true}

func secretValues(reads []checkoutfs.Read) []string {
	set, names := map[string]bool{}, map[string]bool{}
	for _, r := range reads {
		collectValues(r.Data, set, names, 0)
	}
	out := make([]string, 0, len(set))
	for v := range set {
		// A value that is also a name or path is shown where it names.
		if !names[v] {
			out = append(out, v)
		}
	}
	// Longest first, so a value that contains another goes whole.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) || len(out[i]) == len(out[j]) && out[i] < out[j] })
	return out
}

func collectValues(data []byte, set, names map[string]bool, depth int) {
	if depth > 3 {
		return
	}
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for {
		var n yamlv3.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// Not YAML (an env file, a malformed patch): every line's
			// value part is a value.
			for _, line := range strings.Split(string(data), "\n") {
				addValue(set, names, line, depth)
			}
			return
		}
		isSecret := false
		if n.Kind == yamlv3.DocumentNode && len(n.Content) == 1 {
			isSecret = field(n.Content[0], "kind") == "Secret"
		}
		walkScalars(&n, "", func(f string, v *yamlv3.Node) {
			if !sensitive(f) {
				names[v.Value] = true
				return
			}
			addValue(set, names, v.Value, depth)
			if isSecret && strings.HasPrefix(f, "data.") {
				if b, err := base64.StdEncoding.DecodeString(v.Value); err == nil {
					addValue(set, names, string(b), depth)
				}
			}
		})
	}
}

// sensitive says whether the value at field (patches[0].path) is blanked.
func sensitive(field string) bool {
	parts := strings.FieldsFunc(field, func(r rune) bool { return r == '.' || r == '[' || r == ']' })
	var keys []string
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil && !strings.HasPrefix(p, "document ") {
			keys = append(keys, p)
		}
	}
	for _, k := range keys {
		if hidden[k] {
			return true
		}
	}
	return len(keys) == 0 || !shown[keys[len(keys)-1]]
}

func addValue(set, names map[string]bool, v string, depth int) {
	v = strings.TrimSpace(v)
	if strings.Contains(v, "\n") {
		// A block (an inline patch, a file's content): its own values,
		// line by line if it is not YAML.
		collectValues([]byte(v), set, names, depth+1)
		return
	}
	// The value part of "key: value", "- value", "key=value".
	for _, sep := range []string{": ", "=", "- "} {
		if i := strings.Index(v, sep); i >= 0 {
			addValue(set, names, v[i+len(sep):], depth)
			return
		}
	}
	if strings.HasSuffix(v, ":") {
		return // a key with its value on the next lines
	}
	v = strings.Trim(v, `"' `)
	if utf8.RuneCountInString(v) < 4 {
		return
	}
	switch strings.ToLower(v) {
	case "true", "false", "null":
		return
	}
	set[v] = true
}

// scrub blanks every value of the files read out of msg.
func scrub(msg string, reads []checkoutfs.Read) string {
	for _, v := range secretValues(reads) {
		msg = blank(msg, v)
	}
	return msg
}

// blank replaces v in s where it stands as a word of its own.
func blank(s, v string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, v)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(v)
		before, _ := utf8.DecodeLastRuneInString(s[:i])
		after, _ := utf8.DecodeRuneInString(s[end:])
		if i > 0 && word(before) && word(rune(v[0])) || end < len(s) && word(after) && word(rune(v[len(v)-1])) {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString("***")
		s = s[end:]
	}
}

func word(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' }

// legacySort orders resources as `kustomize build` does by default
// (api/internal/builtins/SortOrderTransformer.go, legacy order, v0.21.2,
// which Kustomize marks DO NOT CHANGE).
func legacySort(res []*resource.Resource) {
	type item struct {
		r   *resource.Resource
		gvk string // group_version_kind with Kustomize's placeholders
		g   string
		k   string
		id  string // gvk|namespace|name
	}
	items := make([]item, len(res))
	for i, r := range res {
		id := r.CurId()
		items[i] = item{r: r, gvk: legacyGVK(id.Group, id.Version, id.Kind), g: id.Group, k: id.Kind,
			id: id.Gvk.String() + "|" + orDefault(id.Namespace, "~X") + "|" + orDefault(id.Name, "~N")}
	}
	sort.SliceStable(items, func(a, b int) bool {
		x, y := items[a], items[b]
		if x.gvk == y.gvk {
			return x.id < y.id
		}
		if legacyRank[x.k] != legacyRank[y.k] {
			return legacyRank[x.k] < legacyRank[y.k]
		}
		if x.k == "Namespace" && y.k == "Namespace" && (x.g == "" || y.g == "") {
			return x.gvk > y.gvk
		}
		return x.gvk < y.gvk
	})
	for i := range items {
		res[i] = items[i].r
	}
}

func legacyGVK(g, v, k string) string {
	return orDefault(g, "~G") + "_" + orDefault(v, "~V") + "_" + orDefault(k, "~K")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// legacyRank places kinds first (negative) or last (positive).
var legacyRank = func() map[string]int {
	first := []string{"Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition", "ServiceAccount",
		"PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap", "Secret",
		"Endpoints", "Service", "LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
		"Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget"}
	last := []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
	m := map[string]int{}
	for i, n := range first {
		m[n] = -len(first) + i
	}
	for i, n := range last {
		m[n] = 1 + i
	}
	return m
}()
