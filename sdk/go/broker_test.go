package gregormq_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// broker is a GregorMQ broker process started for a test.
type broker struct {
	cmd  *exec.Cmd
	addr string
	// cluster is its cluster address, for a broker started with a cluster port.
	cluster string
	// nodeID is its node id as its first line says ("" outside a cluster).
	nodeID string
}

// brokerStartTimeout bounds how long a broker may take to print its listen address.
const brokerStartTimeout = 60 * time.Second

// startBroker runs cli/broker.ts of this repository on a free port with its own data directory,
// and stops it when the test ends. It skips the test when deno is not installed.
func startBroker(t testing.TB) *broker {
	t.Helper()
	return startBrokerWith(t)
}

// startCluster starts n brokers that form one replicating cluster, as conformance/README.md
// says: the first founds it, the others join it through its cluster address.
func startCluster(t testing.TB, n int) []*broker {
	t.Helper()
	expect := fmt.Sprint(n)
	flags := []string{"--cluster-port", "0", "--cluster-replicate", "--cluster-bootstrap-expect", expect}
	brokers := []*broker{startBrokerWith(t, flags...)}
	for i := 1; i < n; i++ {
		brokers = append(brokers, startBrokerWith(t, append(flags, "--seeds", brokers[0].cluster)...))
	}
	return brokers
}

// startBrokerWith is startBroker with extra flags.
func startBrokerWith(t testing.TB, extra ...string) *broker {
	t.Helper()
	// GREGORMQ_DENO names the Deno binary when it is not on PATH (the repository's test runner
	// passes its own).
	deno := os.Getenv("GREGORMQ_DENO")
	if deno == "" {
		var err error
		if deno, err = exec.LookPath("deno"); err != nil {
			t.Skip("deno is not on PATH and GREGORMQ_DENO is unset: the tests that need a live broker are skipped")
		}
	}
	script, err := filepath.Abs("../../cli/broker.ts")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "-A", script, "--port", "0", "--data-dir", t.TempDir(),
		"--no-metrics-enabled", "--fsync", "never"}
	cmd := exec.Command(deno, append(args, extra...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &broker{cmd: cmd}
	t.Cleanup(b.stop)
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, err := r.ReadString('\n')
		if err != nil {
			close(lines)
			return
		}
		lines <- line
		_, _ = io.Copy(io.Discard, r) // keep the pipe drained
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatal("the broker exited before listening")
		}
		var listen struct{ Listen, Cluster, NodeID string }
		if err := json.Unmarshal([]byte(line), &listen); err != nil || listen.Listen == "" {
			t.Fatalf("the broker's first line is not its listen address: %q", line)
		}
		b.addr, b.cluster, b.nodeID = listen.Listen, listen.Cluster, listen.NodeID
	case <-time.After(brokerStartTimeout):
		t.Fatalf("the broker did not listen within %v", brokerStartTimeout)
	}
	return b
}

// stop kills the broker and waits for it; stopping twice is harmless.
func (b *broker) stop() {
	if b.cmd.ProcessState == nil {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
	}
}
