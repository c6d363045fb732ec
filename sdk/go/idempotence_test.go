package gregormq_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gregormq "gregormq.dev/sdk/go"
)

// cuttingProxy forwards connections to a broker and cuts each of the first `cuts` connections once
// `afterBytes` bytes of the broker's answers have gone through, so answers to produces the broker
// stored are lost.
type cuttingProxy struct {
	ln         net.Listener
	target     string
	afterBytes int64
	cuts       atomic.Int32
	cut        atomic.Int32 // connections cut so far
	wg         sync.WaitGroup
}

func startCuttingProxy(t *testing.T, target string, cuts int32, afterBytes int64) *cuttingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target, afterBytes: afterBytes}
	p.cuts.Store(cuts)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cuttingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		cut := p.cuts.Add(-1) >= 0
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(b, c); b.Close() }()
		go func() {
			defer p.wg.Done()
			if cut {
				if _, err := io.CopyN(c, b, p.afterBytes); err == nil {
					p.cut.Add(1)
				}
			} else {
				_, _ = io.Copy(c, b)
			}
			c.Close()
			b.Close()
		}()
	}
}

// An idempotent producer whose connection is cut three times, losing answers to batches the broker
// stored, still stores every message exactly once and in order.
func TestIdempotentRetriesThroughCutConnections(t *testing.T) {
	b := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{b.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(ctx, "cuts", 1, nil); err != nil {
		t.Fatal(err)
	}
	proxy := startCuttingProxy(t, b.addr, 3, 400)
	client, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{proxy.ln.Addr().String()},
		ReconnectBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	p := client.NewProducer(gregormq.ProducerConfig{BatchRecordsMax: 7})
	const count = 600
	var failed atomic.Int32
	for i := range count {
		msg := gregormq.Message{Value: []byte(fmt.Sprint(i))}
		if err := p.SendAsync(ctx, "cuts", msg, func(_ gregormq.Result, err error) {
			if err != nil {
				failed.Add(1)
				t.Errorf("message %d failed: %v", i, err)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := proxy.cut.Load(); n < 3 {
		t.Fatalf("the proxy cut only %d connections: the test did not test retries", n)
	}
	sub, err := admin.Subscribe(ctx, "cuts", gregormq.SubscribeConfig{From: gregormq.FromEarliest, NoAcks: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range count {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) != fmt.Sprint(i) || m.Offset != int64(i) {
			t.Fatalf("offset %d holds %q, want %d", m.Offset, m.Value, i)
		}
	}
	d, err := admin.DescribeTopic(ctx, "cuts")
	if err != nil {
		t.Fatal(err)
	}
	if hw := d.Partitions[0].HighWatermark; hw != count {
		t.Fatalf("the partition holds %d records, want %d exactly once", hw, count)
	}
}
