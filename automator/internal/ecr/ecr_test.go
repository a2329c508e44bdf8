package ecr_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/google/go-containerregistry/pkg/name"

	"driftless.dev/automator/internal/ecr"
	"driftless.dev/automator/internal/ecr/ecrtest"
	"driftless.dev/automator/internal/registry"
	"driftless.dev/shared/testenv"
)

const ecrHost = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

func awsConfig(keyID string) aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(keyID, "secret-key", "")}
}

// resolveTo reaches every host at reg's address, verifying reg's
// certificate: an /etc/hosts entry for the test, so the real registry
// answers under an ECR host name.
func resolveTo(t *testing.T, reg *testenv.Registry) http.RoundTripper {
	t.Helper()
	tr := reg.Transport.(*http.Transport).Clone()
	ip, _, _ := net.SplitHostPort(reg.Host)
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, reg.Host)
	}
	tr.TLSClientConfig.ServerName = ip
	return tr
}

// TestECRPathAgainstARealRegistry: the SDK gets a token from the ECR API
// stand-in, and that token opens a real registry that requires user AWS,
// reached under its ECR name.
func TestECRPathAgainstARealRegistry(t *testing.T) {
	const token = "ecr-token-password"
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{TLS: true, Auth: &testenv.BasicAuth{Username: "AWS", Password: token}})
	if _, err := reg.PushImages(t.Context(), "team/app", "1.0.0", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	standIn := &ecrtest.StandIn{Password: token, TTL: time.Hour, AccessKeyID: "AKIDTEST"}
	api := httptest.NewServer(standIn)
	defer api.Close()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tokens := ecr.NewTokens(awsConfig("AKIDTEST"), api.URL, ecr.WithClock(clock), ecr.WithAllowedAccounts("123456789012"))
	client := registry.New(registry.WithTransport(resolveTo(t, reg)))
	repo, _ := name.NewRepository(ecrHost + "/team/app")
	req := ecr.Request{Host: ecrHost}

	list := func() []string {
		t.Helper()
		auth, err := tokens.Authenticator(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		tags, err := client.Tags(t.Context(), repo, auth)
		if err != nil {
			t.Fatal(err)
		}
		return tags
	}
	if tags := list(); len(tags) != 2 {
		t.Fatalf("tags %v", tags)
	}
	// Within the token's life: served from the cache.
	list()
	if n := standIn.Calls(); n != 1 {
		t.Fatalf("%d token calls, want 1 (cached)", n)
	}
	// 44 minutes on: still fresh.
	mu.Lock()
	now = now.Add(44 * time.Minute)
	mu.Unlock()
	list()
	if n := standIn.Calls(); n != 1 {
		t.Fatalf("%d token calls 44m into a 1h token, want 1", n)
	}
	// Past the refresh point (a quarter of the life before expiry, 45m):
	// a new token, without a restart, fetched once however many scans
	// ask at the same moment.
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := tokens.Authenticator(t.Context(), req); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	list()
	if n := standIn.Calls(); n != 2 {
		t.Fatalf("%d token calls after expiry with 9 scans asking, want 2 (refreshed once)", n)
	}
}

func TestECRErrorsNameTheRegistryNotTheSecret(t *testing.T) {
	api := httptest.NewServer(&ecrtest.StandIn{Password: "p", AccessKeyID: "AKIDRIGHT"})
	defer api.Close()
	tokens := ecr.NewTokens(awsConfig("AKIDWRONG"), api.URL, ecr.WithAllowedAccounts("123456789012"))
	_, err := tokens.Authenticator(context.Background(), ecr.Request{Host: ecrHost})
	if err == nil || !strings.Contains(err.Error(), ecrHost) || !strings.Contains(err.Error(), "UnrecognizedClientException") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "secret-key") {
		t.Fatalf("error leaks the secret key: %v", err)
	}
	var ae interface{ ErrorCode() string }
	if !errors.As(err, &ae) {
		t.Fatalf("the AWS error code should stay inspectable: %T", err)
	}
}

func TestParseHost(t *testing.T) {
	for host, want := range map[string]string{
		"123456789012.dkr.ecr.us-east-1.amazonaws.com":                    "123456789012/us-east-1",
		"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com":           "123456789012/us-gov-west-1",
		"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn":                "123456789012/cn-north-1",
		"123456789012.dkr-ecr.eu-west-1.on.aws":                           "123456789012/eu-west-1",
		"123456789012.dkr-ecr-fips.us-east-2.on.aws":                      "123456789012/us-east-2",
		"123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn": "123456789012/cn-northwest-1",
		"123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov":                   "123456789012/us-iso-east-1",
		"123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu":                "123456789012/eusc-de-east-1",
		// Not ECR.
		"ghcr.io":        "",
		"127.0.0.1:5000": "",
		"123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io": "",
		"123456789012.dkr.ecr.s3-us-west-2.amazonaws.com":      "", // an S3 bucket named 123456789012.dkr.ecr
		"123456789012.dkr.ecr.cn-north-1.amazonaws.com":        "", // a China region outside .com.cn
		"123456789012.dkr.ecr.us-east-1.on.aws":                "", // dual-stack is dkr-ecr
		"12345.dkr.ecr.us-east-1.amazonaws.com":                "",
	} {
		r, ok := ecr.ParseHost(host)
		got := ""
		if ok {
			got = r.Account + "/" + r.Region
		}
		if got != want {
			t.Errorf("ParseHost(%q) = %q, want %q", host, got, want)
		}
	}
}

// TestTokensOnlyForAllowedRegistries: the token and the roles belong to
// the installation. A host that is not ECR, an account not allowed, a role
// not listed: refused before any AWS call.
func TestTokensOnlyForAllowedRegistries(t *testing.T) {
	standIn := &ecrtest.StandIn{Password: "p", Account: "123456789012"}
	api := httptest.NewServer(standIn)
	defer api.Close()
	cfg := awsConfig("AKID")
	cfg.BaseEndpoint = aws.String(api.URL) // STS too
	const role = "arn:aws:iam::210987654321:role/pull"
	tokens := ecr.NewTokens(cfg, api.URL, ecr.WithAllowedAccounts("123456789012", "210987654321"), ecr.WithAllowedRoles(role))
	for _, c := range []struct {
		req  ecr.Request
		want error
	}{
		{ecr.Request{Host: "127.0.0.1:5000"}, ecr.ErrNotECRHost},
		{ecr.Request{Host: "ghcr.io"}, ecr.ErrNotECRHost},
		{ecr.Request{Host: "123456789012.dkr.ecr.s3-us-west-2.amazonaws.com"}, ecr.ErrNotECRHost},
		{ecr.Request{Host: "999999999999.dkr.ecr.us-east-1.amazonaws.com"}, ecr.ErrAccountNotAllowed},
		{ecr.Request{Host: ecrHost, RoleARN: "arn:aws:iam::123456789012:role/admin"}, ecr.ErrRoleNotAllowed},
	} {
		if _, err := tokens.Authenticator(t.Context(), c.req); !errors.Is(err, c.want) {
			t.Errorf("%+v: got %v, want %v", c.req, err, c.want)
		}
		if _, err := tokens.PushTimes(t.Context(), c.req, "team/app"); !errors.Is(err, c.want) {
			t.Errorf("PushTimes %+v: got %v, want %v", c.req, err, c.want)
		}
	}
	if n := standIn.Total(); n != 0 {
		t.Fatalf("%d AWS calls for refused requests, want none", n)
	}
	// An allowed role is assumed once for any number of calls: one client
	// and one credentials cache per region and role.
	standIn.Images = map[string][]ecrtest.Image{"team/app": {{Tags: []string{"1.0.0"}, PushedAt: time.Now()}}}
	req := ecr.Request{Host: "210987654321.dkr.ecr.eu-west-1.amazonaws.com", RoleARN: role}
	for range 3 {
		if _, err := tokens.Authenticator(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		if _, err := tokens.PushTimes(t.Context(), req, "team/app"); err != nil {
			t.Fatal(err)
		}
	}
	if got := standIn.Roles(); !slices.Equal(got, []string{role}) {
		t.Fatalf("AssumeRole calls %v, want one for %s", got, role)
	}
	if standIn.Calls() != 1 || standIn.CallsOf("DescribeImages") != 3 {
		t.Fatalf("%d token calls, %d DescribeImages; want 1 and 3", standIn.Calls(), standIn.CallsOf("DescribeImages"))
	}
}

// TestDefaultAllowsOnlyTheOwnAccount: with no allow list, the registries of
// the automator's own account (STS GetCallerIdentity, asked once) and no
// other: an empty list never means any.
func TestDefaultAllowsOnlyTheOwnAccount(t *testing.T) {
	standIn := &ecrtest.StandIn{Password: "p", Account: "123456789012"}
	api := httptest.NewServer(standIn)
	defer api.Close()
	cfg := awsConfig("AKID")
	cfg.BaseEndpoint = aws.String(api.URL)
	tokens := ecr.NewTokens(cfg, api.URL)
	if _, err := tokens.Authenticator(t.Context(), ecr.Request{Host: ecrHost}); err != nil {
		t.Fatal(err)
	}
	_, err := tokens.Authenticator(t.Context(), ecr.Request{Host: "999999999999.dkr.ecr.us-east-1.amazonaws.com"})
	if !errors.Is(err, ecr.ErrAccountNotAllowed) || !strings.Contains(err.Error(), "allowed: 123456789012") {
		t.Fatalf("another account: got %v", err)
	}
	if n := standIn.CallsOf("GetCallerIdentity"); n != 1 {
		t.Fatalf("%d GetCallerIdentity calls, want 1", n)
	}
}
