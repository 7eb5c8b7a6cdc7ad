// Command echo is cmdtest's own test subject: it writes its arguments to
// stdout, ECHO_STDERR to stderr, and exits with ECHO_EXIT.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

func main() {
	fmt.Println(strings.Join(os.Args[1:], " "))
	fmt.Fprint(os.Stderr, os.Getenv("ECHO_STDERR"))
	code, _ := strconv.Atoi(os.Getenv("ECHO_EXIT"))
	os.Exit(code)
}
