// Package ecrtest is a local stand-in for the AWS ECR control API, which
// cannot be reached from a test machine. It answers GetAuthorizationToken
// and DescribeImages the way ECR does (AWS JSON 1.1 protocol), and the two
// STS calls the automator makes, GetCallerIdentity and AssumeRole (the
// query protocol), so the real AWS SDK clients are exercised end to end
// through their endpoint setting. Only AWS's control APIs are stood in
// for: images are served by a real registry.
package ecrtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
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
	// Account is the caller's account GetCallerIdentity reports.
	Account string

	mu    sync.Mutex
	calls map[string]int
	// roles are the RoleArn of every AssumeRole, in order.
	roles []string
}

// Image is one image of a repository: its tags and push time.
type Image struct {
	Tags     []string
	PushedAt time.Time
}

// Calls returns how many tokens were handed out.
func (s *StandIn) Calls() int { return s.CallsOf("GetAuthorizationToken") }

// CallsOf returns how many times an operation was called, ECR's or STS's
// ("DescribeImages", "GetCallerIdentity", "AssumeRole").
func (s *StandIn) CallsOf(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Total returns how many AWS calls of any kind arrived.
func (s *StandIn) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

func (s *StandIn) count(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls[op]++
}

func (s *StandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if target == "" && r.Method == http.MethodPost {
		s.sts(w, r)
		return
	}
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
		s.count("GetAuthorizationToken")
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
		s.count("DescribeImages")
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

// sts answers STS's query protocol: GetCallerIdentity and AssumeRole.
func (s *StandIn) sts(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	action := r.PostForm.Get("Action")
	s.count(action)
	w.Header().Set("Content-Type", "text/xml")
	const ns = `xmlns="https://sts.amazonaws.com/doc/2011-06-15/"`
	switch action {
	case "GetCallerIdentity":
		fmt.Fprintf(w, `<GetCallerIdentityResponse %s><GetCallerIdentityResult><Arn>arn:aws:iam::%[2]s:role/automator</Arn><UserId>AROATEST</UserId><Account>%[2]s</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>`, ns, s.Account)
	case "AssumeRole":
		s.mu.Lock()
		s.roles = append(s.roles, r.PostForm.Get("RoleArn"))
		s.mu.Unlock()
		exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		fmt.Fprintf(w, `<AssumeRoleResponse %s><AssumeRoleResult><Credentials><AccessKeyId>ASIATEST</AccessKeyId><SecretAccessKey>assumed-secret</SecretAccessKey><SessionToken>assumed-token</SessionToken><Expiration>%s</Expiration></Credentials><AssumedRoleUser><Arn>%s/driftless-automator</Arn><AssumedRoleId>AROATEST:driftless-automator</AssumedRoleId></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>2</RequestId></ResponseMetadata></AssumeRoleResponse>`, ns, exp, r.PostForm.Get("RoleArn"))
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<ErrorResponse %s><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>%s is not implemented by the stand-in</Message></Error><RequestId>3</RequestId></ErrorResponse>`, ns, action)
	}
}

// Roles returns the RoleArn of every AssumeRole so far.
func (s *StandIn) Roles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.roles...)
}
