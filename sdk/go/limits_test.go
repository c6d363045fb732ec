package gregormq

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A compressed batch whose records inflate past the limit is refused with CORRUPT_BATCH, for
// every codec, before or while inflating, never after allocating the whole output.
func TestDecompressionIsBoundedForEveryCodec(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 1<<20)
	for _, c := range []Codec{CodecGzip, CodecSnappy, CodecLZ4, CodecZstd} {
		b, err := EncodeBatch([]Record{{Value: big}}, PlainBatch(c))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 64*1024 {
			t.Fatalf("%s: 1 MiB of one byte compressed to %d bytes", c, len(b))
		}
		if _, err := DecodeBatches(b, 64*1024); !errors.Is(err, ErrCorruptBatch) {
			t.Errorf("%s: a batch inflating to 1 MiB under a 64 KiB limit gave %v", c, err)
		}
		got, err := DecodeBatches(b, 2<<20)
		if err != nil || !bytes.Equal(got[0].Records[0].Value, big) {
			t.Errorf("%s: within the limit the batch does not decode: %v", c, err)
		}
	}
}

// A flipped bit anywhere after the CRC field fails the batch's CRC-32C check.
func TestBatchCRCCoversRecords(t *testing.T) {
	b, err := EncodeBatch([]Record{{Key: []byte("k"), Value: []byte("value")}}, PlainBatch(CodecNone))
	if err != nil {
		t.Fatal(err)
	}
	for i := offAttributes; i < len(b); i++ {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		if _, err := DecodeBatches(c, 1<<20); !errors.Is(err, ErrCorruptBatch) {
			t.Fatalf("flipping byte %d gave %v, not CORRUPT_BATCH", i, err)
		}
	}
}

// startTestBroker starts a broker process for the package's internal tests (see broker_test.go
// for the external ones); it skips without deno.
func startTestBroker(t *testing.T, args ...string) string {
	deno := os.Getenv("GREGORMQ_DENO")
	if deno == "" {
		var err error
		if deno, err = exec.LookPath("deno"); err != nil {
			t.Skip("deno is not on PATH and GREGORMQ_DENO is unset")
		}
	}
	script, _ := filepath.Abs("../../cli/broker.ts")
	cmd := exec.Command(deno, append([]string{"run", "-A", script, "--port", "0", "--data-dir",
		t.TempDir(), "--no-metrics-enabled", "--fsync", "never"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("the broker exited before listening: %v", err)
	}
	go func() { _, _ = r.WriteTo(discard{}) }()
	var listen struct{ Listen string }
	if err := json.Unmarshal([]byte(line), &listen); err != nil {
		t.Fatalf("the broker's first line %q: %v", line, err)
	}
	return listen.Listen
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// A consumer that does not read holds at most its window of messages: the broker stops sending
// until Next gives credit back, and then everything arrives.
func TestSlowConsumerGetsNoMoreThanItsWindow(t *testing.T) {
	addr := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := Dial(ctx, Config{Servers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const window, count = 3, 20
	for i := range count {
		if _, err := cl.Publish(ctx, "slow", Message{Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := cl.Subscribe(ctx, "slow", SubscribeConfig{From: FromEarliest, WindowMessages: window, NoAcks: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	sub.mu.Lock()
	held := len(sub.queue)
	sub.mu.Unlock()
	if held != window {
		t.Fatalf("an idle consumer with a window of %d holds %d messages", window, held)
	}
	for i := range count {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Offset != int64(i) {
			t.Fatalf("offset %d, want %d", m.Offset, i)
		}
		sub.mu.Lock()
		held = len(sub.queue)
		sub.mu.Unlock()
		if held > window {
			t.Fatalf("after %d messages the consumer holds %d, over its window of %d", i+1, held, window)
		}
	}
}

// A batch the broker refuses before taking its sequence (here one over --batch-bytes-max) fails
// alone: the idempotent producer renumbers the batches in flight behind it, which are stored at
// once and in order instead of failing OUT_OF_ORDER_SEQUENCE until their delivery timeout.
func TestRefusedBatchLeavesNoSequenceGap(t *testing.T) {
	addr := startTestBroker(t, "--batch-bytes-max", "4096")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := Dial(ctx, Config{Servers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.CreateTopic(ctx, "gap", 1, nil); err != nil {
		t.Fatal(err)
	}
	// One record per batch, all in flight at once; deliveries that stall fail the test in 5 s.
	p := cl.NewProducer(ProducerConfig{BatchRecordsMax: 1, DeliveryTimeout: 5 * time.Second})
	type answer struct {
		r   Result
		err error
	}
	values := [][]byte{[]byte("a"), make([]byte, 8192), []byte("b"), []byte("c"), []byte("d")}
	answers := make([]chan answer, len(values))
	for i, v := range values {
		answers[i] = make(chan answer, 1)
		ch := answers[i]
		if err := p.SendAsync(ctx, "gap", Message{Value: v}, func(r Result, err error) { ch <- answer{r, err} }); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var offsets []int64
	for i, ch := range answers {
		a := <-ch
		if i == 1 {
			if !errors.Is(a.err, ErrBatchTooLarge) {
				t.Fatalf("the 8 KiB message gave %v, want BATCH_TOO_LARGE", a.err)
			}
			continue
		}
		if a.err != nil {
			t.Fatalf("message %d failed: %v", i, a.err)
		}
		offsets = append(offsets, a.r.Offset)
	}
	if fmt.Sprint(offsets) != "[0 1 2 3]" {
		t.Fatalf("offsets %v, want [0 1 2 3]", offsets)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the messages behind the refused one took %v", d)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
