// Command hello serves "hello from <pod> uid <uid> roots <n>" on :8080:
// the program of the real-node test's Pod, in an image built here. roots
// is how many CA certificates Go's crypto/x509 found in the image, which
// is how the programs verify TLS to ECR, STS and GitHub.
package main

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
)

func main() {
	name, _ := os.Hostname()
	roots := 0
	if pool, err := x509.SystemCertPool(); err == nil {
		roots = len(pool.Subjects()) //nolint:staticcheck // a count is all we need
	}
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s uid %d roots %d\n", name, os.Getuid(), roots)
	})
	fmt.Println("listening on :8080")
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
