// Command standin serves ecrtest.StandIn, the local stand-in for the AWS
// ECR and STS control APIs, on a loopback port, for end-to-end tests that
// run the automator as a program (they cannot import an internal
// package). The registry password each token carries is read from a
// file, never from the command line, so it shows in no process list.
//
//	standin --listen 127.0.0.1:0 --password-file F --account 111122223333 --access-key-id AKID
//
// It prints the URL it serves on its first line of output.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"driftless.dev/automator/internal/ecr/ecrtest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	passwordFile := flag.String("password-file", "", "file holding the registry password each token carries")
	account := flag.String("account", "", "the account GetCallerIdentity reports")
	accessKey := flag.String("access-key-id", "", "access key id every request must be signed with")
	flag.Parse()
	pw, err := os.ReadFile(*passwordFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "--password-file:", err)
		os.Exit(2)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "--listen:", err)
		os.Exit(2)
	}
	fmt.Printf("http://%s\n", l.Addr())
	s := &ecrtest.StandIn{Password: strings.TrimSpace(string(pw)), TTL: 12 * time.Hour, Account: *account, AccessKeyID: *accessKey}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
