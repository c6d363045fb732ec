package gregormq

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// lingerLong is a linger no test waits out: a batch these tests see stored was sent early.
const lingerLong = 30 * time.Second

// sendAll queues messages from to to-1, made by value; results gets each one's result in the order
// their callbacks run.
func sendAll(ctx context.Context, t *testing.T, p *Producer, topic string, from, to int, value func(int) []byte, results chan Result) {
	t.Helper()
	for i := from; i < to; i++ {
		err := p.SendAsync(ctx, topic, Message{Value: value(i)}, func(r Result, err error) {
			if err != nil {
				t.Errorf("message %d: %v", i, err)
			}
			results <- r
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A batch that reaches BatchRecordsMax or BatchBytesMax is sent at once: it does not wait out
// Linger, which only bounds how long a batch that is not full waits for more messages.
func TestFullBatchIsSentWithoutWaitingOutLinger(t *testing.T) {
	addr := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := Dial(ctx, Config{Servers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, c := range []struct {
		name string
		cfg  ProducerConfig
	}{
		{"records", ProducerConfig{Linger: lingerLong, BatchRecordsMax: 10}},
		// 8 messages of 100 bytes (116 counted each) fill 1000 bytes; the 9th would not fit.
		{"bytes", ProducerConfig{Linger: lingerLong, BatchBytesMax: 1000}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			topic := "full-" + c.name
			if err := cl.CreateTopic(ctx, topic, 1, nil); err != nil {
				t.Fatal(err)
			}
			p := cl.NewProducer(c.cfg)
			defer func() {
				closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = p.Close(closeCtx)
			}()
			// Four full batches and one more message, which lingers. The first message goes alone,
			// so the batch is open and lingering when the rest arrive.
			full := 4 * 10
			if c.name == "bytes" {
				full = 4 * 8
			}
			results := make(chan Result, full+1)
			value := func(int) []byte { return make([]byte, 100) }
			sendAll(ctx, t, p, topic, 0, 1, value, results)
			time.Sleep(100 * time.Millisecond)
			sendAll(ctx, t, p, topic, 1, full+1, value, results)
			wait, cancelWait := context.WithTimeout(ctx, 10*time.Second)
			defer cancelWait()
			for i := range full {
				select {
				case r := <-results:
					if r.Offset != int64(i) {
						t.Fatalf("message %d stored at offset %d", i, r.Offset)
					}
				case <-wait.Done():
					t.Fatalf("%d of %d messages in full batches stored after 10 s, with a linger of %v",
						i, full, lingerLong)
				}
			}
			select {
			case r := <-results:
				t.Fatalf("the message of a batch that is not full was stored (offset %d) before its linger", r.Offset)
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
}

// Flush does not wait out Linger: it sends the batches that are not full at once.
func TestFlushSendsLingeringBatchesAtOnce(t *testing.T) {
	addr := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := Dial(ctx, Config{Servers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const partitions, count = 3, 30
	if err := cl.CreateTopic(ctx, "flush", partitions, nil); err != nil {
		t.Fatal(err)
	}
	p := cl.NewProducer(ProducerConfig{Linger: lingerLong})
	results := make(chan Result, count)
	for i := range count {
		m := Message{Value: []byte(fmt.Sprint(i)), Partition: PartitionOf(i % partitions)}
		if err := p.SendAsync(ctx, "flush", m, func(r Result, err error) {
			if err != nil {
				t.Errorf("message %d: %v", i, err)
			}
			results <- r
		}); err != nil {
			t.Fatal(err)
		}
	}
	flushCtx, cancelFlush := context.WithTimeout(ctx, 10*time.Second)
	defer cancelFlush()
	start := time.Now()
	if err := p.Flush(flushCtx); err != nil {
		t.Fatalf("Flush of %d lingering messages failed after %v: %v", count, time.Since(start), err)
	}
	if len(results) != count {
		t.Fatalf("Flush returned with %d of %d messages answered", len(results), count)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// SendAsync copies the message: a caller that reuses its buffer once SendAsync returns, while the
// batch still lingers, does not change what is stored.
func TestSendAsyncCopiesTheMessage(t *testing.T) {
	addr := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := Dial(ctx, Config{Servers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.CreateTopic(ctx, "reuse", 1, nil); err != nil {
		t.Fatal(err)
	}
	const count = 20
	p := cl.NewProducer(ProducerConfig{Linger: 300 * time.Millisecond})
	buf := make([]byte, 8)
	results := make(chan Result, count)
	sendAll(ctx, t, p, "reuse", 0, count, func(i int) []byte {
		copy(buf, fmt.Sprintf("msg-%04d", i))
		return buf
	}, results)
	copy(buf, "reused!!")
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(results) != count {
		t.Fatalf("%d of %d messages answered", len(results), count)
	}
	sub, err := cl.Subscribe(ctx, "reuse", SubscribeConfig{From: FromEarliest, NoAcks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close(ctx)
	for i := range count {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("msg-%04d", i); string(m.Value) != want {
			t.Fatalf("offset %d holds %q, want %q", m.Offset, m.Value, want)
		}
	}
}

// Flush returns once every callback of the messages queued before it has returned, the last
// batch's included, not as soon as the broker has answered.
func TestFlushWaitsForEveryCallback(t *testing.T) {
	addr := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := Dial(ctx, Config{Servers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.CreateTopic(ctx, "callbacks", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := cl.NewProducer(ProducerConfig{})
	defer p.Close(ctx)
	const count = 50
	var answered atomic.Int32
	for i := range count {
		if err := p.SendAsync(ctx, "callbacks", Message{Value: []byte(fmt.Sprint(i))}, func(_ Result, err error) {
			if err != nil {
				t.Errorf("message %d: %v", i, err)
			}
			// A slow callback: Flush must wait for it.
			time.Sleep(2 * time.Millisecond)
			answered.Add(1)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := answered.Load(); n != count {
		t.Fatalf("Flush returned with %d of %d callbacks done", n, count)
	}
}
