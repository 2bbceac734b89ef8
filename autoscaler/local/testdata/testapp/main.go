// Command testapp is an instance for the supervisor's tests. APP_MODE picks what it does:
//
//   - serve (default): HTTP on 127.0.0.1:$PORT; GET /env/NAME answers $NAME, anything else "ok".
//     With APP_IGNORE_TERM=1 it ignores SIGTERM; with APP_CHILD=1 it starts `sleep 600` in its
//     process group and prints "child <pid>".
//   - crash: says "fatal: boom" on stderr and exits 1.
//
// Every request is logged on stdout as "request <path>".
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if os.Getenv("APP_MODE") == "crash" {
		fmt.Println("starting, about to crash")
		fmt.Fprintln(os.Stderr, "fatal: boom")
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if os.Getenv("APP_CHILD") == "1" {
		c := exec.Command("sleep", "600")
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start child:", err)
			os.Exit(2)
		}
		fmt.Printf("child %d\n", c.Process.Pid)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s\n", r.URL.Path)
		if name, ok := strings.CutPrefix(r.URL.Path, "/env/"); ok {
			fmt.Fprint(w, os.Getenv(name))
			return
		}
		fmt.Fprint(w, "ok")
	}))
	for range sigs {
		if os.Getenv("APP_IGNORE_TERM") == "1" {
			fmt.Println("ignoring SIGTERM")
			continue
		}
		fmt.Println("stopping on SIGTERM")
		return
	}
}
