package ecr_test

import (
	"context"
	"errors"
	"net/http/httptest"
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

func awsConfig(keyID string) aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(keyID, "secret-key", "")}
}

// TestECRPathAgainstARealRegistry: the SDK gets a token from the ECR API
// stand-in, and that token opens a real registry that requires user AWS.
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
	tokens := ecr.NewTokens(awsConfig("AKIDTEST"), api.URL, ecr.WithClock(clock))
	client := registry.New(registry.WithTransport(reg.Transport))
	repo, _ := name.NewRepository(reg.Repository("team/app"))
	req := ecr.Request{Host: reg.Host, Account: "123456789012", Region: "us-east-1"}

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
	if ids := standIn.RegistryIDs(); len(ids) != 1 || ids[0] != "123456789012" {
		t.Fatalf("registryIds %v, want the account", ids)
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
	// a new token, without a restart.
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	list()
	if n := standIn.Calls(); n != 2 {
		t.Fatalf("%d token calls after expiry, want 2 (refreshed)", n)
	}
	if tokens.Fetches() != 2 {
		t.Fatalf("Fetches = %d", tokens.Fetches())
	}
}

func TestECRErrorsNameTheRegistryNotTheSecret(t *testing.T) {
	api := httptest.NewServer(&ecrtest.StandIn{Password: "p", AccessKeyID: "AKIDRIGHT"})
	defer api.Close()
	tokens := ecr.NewTokens(awsConfig("AKIDWRONG"), api.URL)
	_, err := tokens.Authenticator(context.Background(), ecr.Request{Host: "123456789012.dkr.ecr.us-east-1.amazonaws.com", Region: "us-east-1"})
	if err == nil || !strings.Contains(err.Error(), "123456789012.dkr.ecr.us-east-1.amazonaws.com") || !strings.Contains(err.Error(), "UnrecognizedClientException") {
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
