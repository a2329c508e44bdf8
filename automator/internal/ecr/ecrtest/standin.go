// Package ecrtest is a local stand-in for the AWS ECR control API, which
// cannot be reached from a test machine. It answers GetAuthorizationToken
// and DescribeImages the way ECR does (AWS JSON 1.1 protocol), so the real AWS SDK client is
// exercised end to end through its endpoint setting. Only the registry's
// control API is stood in for: images are served by a real registry.
package ecrtest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StandIn serves GetAuthorizationToken.
type StandIn struct {
	// Password is the registry password each token carries (user AWS).
	Password string
	// TTL is each token's lifetime; ECR's is 12 hours.
	TTL time.Duration
	// AccessKeyID, when set, must sign every request: proof that the
	// SDK's credential chain reached the call.
	AccessKeyID string

	// Images are what DescribeImages reports, per repository name.
	Images map[string][]Image

	mu       sync.Mutex
	calls    int
	registry []string
}

// Image is one image of a repository: its tags and push time.
type Image struct {
	Tags     []string
	PushedAt time.Time
}

// Calls returns how many tokens were handed out.
func (s *StandIn) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// RegistryIDs returns the registryIds of the last call.
func (s *StandIn) RegistryIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registry
}

func (s *StandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || !strings.HasPrefix(target, "AmazonEC2ContainerRegistry_V20150921.") {
		awsError(w, http.StatusBadRequest, "UnknownOperationException", "not an ECR API call")
		return
	}
	if s.AccessKeyID != "" && !strings.Contains(r.Header.Get("Authorization"), "Credential="+s.AccessKeyID+"/") {
		awsError(w, http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return
	}
	switch strings.TrimPrefix(target, "AmazonEC2ContainerRegistry_V20150921.") {
	case "GetAuthorizationToken":
		var in struct {
			RegistryIDs []string `json:"registryIds"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		s.mu.Lock()
		s.calls++
		s.registry = in.RegistryIDs
		s.mu.Unlock()
		ttl := s.TTL
		if ttl == 0 {
			ttl = 12 * time.Hour
		}
		exp := time.Now().Add(ttl)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"authorizationData": []map[string]any{{
				"authorizationToken": base64.StdEncoding.EncodeToString([]byte("AWS:" + s.Password)),
				"expiresAt":          float64(exp.UnixMilli()) / 1000,
				"proxyEndpoint":      "https://" + r.Host,
			}},
		})
	case "DescribeImages":
		s.describeImages(w, r)
	default:
		awsError(w, http.StatusBadRequest, "UnknownOperationException", target+" is not implemented by the stand-in")
	}
}

func awsError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

// describeImages pages through a repository's images as ECR does: at most
// maxResults a page, continued with the nextToken it hands out.
func (s *StandIn) describeImages(w http.ResponseWriter, r *http.Request) {
	var in struct {
		RepositoryName string `json:"repositoryName"`
		MaxResults     int    `json:"maxResults"`
		NextToken      string `json:"nextToken"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		awsError(w, http.StatusBadRequest, "InvalidParameterException", "bad request body")
		return
	}
	imgs, ok := s.Images[in.RepositoryName]
	if !ok {
		awsError(w, http.StatusBadRequest, "RepositoryNotFoundException", "The repository with name '"+in.RepositoryName+"' does not exist")
		return
	}
	start, _ := strconv.Atoi(in.NextToken)
	size := in.MaxResults
	if size <= 0 || size > 1000 {
		size = 100
	}
	end := min(start+size, len(imgs))
	details := []map[string]any{}
	for _, img := range imgs[start:end] {
		details = append(details, map[string]any{
			"repositoryName": in.RepositoryName,
			"imageTags":      img.Tags,
			"imagePushedAt":  float64(img.PushedAt.UnixMilli()) / 1000,
		})
	}
	out := map[string]any{"imageDetails": details}
	if end < len(imgs) {
		out["nextToken"] = strconv.Itoa(end)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}
