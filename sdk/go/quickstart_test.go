package gregormq_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's quick start, copied into a fresh module that points at this SDK with a replace
// directive, builds and runs against a live broker.
func TestReadmeQuickStart(t *testing.T) {
	b := startBroker(t)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) != 1 {
		t.Fatalf("README.md has %d go blocks, want the one quick start", len(blocks))
	}
	sdk, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(blocks[0][1]), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GREGORMQ_SERVER="+b.addr, "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("go", "mod", "init", "hello")
	run("go", "mod", "edit", "-require", "gregormq.dev/sdk/go@v0.0.0",
		"-replace", "gregormq.dev/sdk/go="+sdk)
	run("go", "mod", "tidy")
	out := run("go", "run", ".")
	if !regexp.MustCompile(`^offset \d+: hello, world\n$`).MatchString(out) {
		t.Fatalf("the quick start printed %q", out)
	}
}
