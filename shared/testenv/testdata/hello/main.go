// Command hello serves "hello from <pod>" on :8080: the program of the
// real-node test's Pod, in an image built here.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	name, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s uid %d\n", name, os.Getuid())
	})
	fmt.Println("listening on :8080")
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
