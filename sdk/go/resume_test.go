package gregormq_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	gregormq "gregormq.dev/sdk/go"
)

// A subscription with acknowledgements whose connection is cut mid-delivery subscribes again from
// after its last acknowledgement: messages handed out but not acknowledged come again, marked
// Redelivered, and every offset is seen, as the TypeScript client does.
func TestResumeAfterCutRedeliversWhatWasNotAcknowledged(t *testing.T) {
	b := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{b.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	p := admin.NewProducer(gregormq.ProducerConfig{BatchRecordsMax: 1})
	const count = 200
	for i := range count {
		if err := p.SendAsync(ctx, "resume", gregormq.Message{Value: []byte(fmt.Sprint(i))}, func(gregormq.Result, error) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	proxy := startCuttingProxy(t, b.addr, 1, 3000)
	cl, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{proxy.ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sub, err := cl.Subscribe(ctx, "resume", gregormq.SubscribeConfig{From: gregormq.FromEarliest, WindowMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	var acked, highest int64 = -1, -1
	rewinds := 0
	for highest < count-1 {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Offset <= highest {
			if !m.Redelivered || m.Offset != acked+1 && m.Offset <= acked {
				t.Fatalf("offset %d again (acked %d, highest %d), redelivered %v", m.Offset, acked, highest, m.Redelivered)
			}
			if m.Offset == acked+1 {
				rewinds++
			}
		} else if m.Offset != highest+1 {
			t.Fatalf("offset %d after %d: a gap", m.Offset, highest)
		} else {
			highest = m.Offset
		}
		if m.Offset%7 == 0 && m.Offset > acked {
			acked = m.Offset
			if err := sub.Ack(acked); err != nil {
				t.Fatal(err)
			}
		}
	}
	if proxy.cut.Load() != 1 || rewinds == 0 {
		t.Fatalf("cuts %d, rewinds %d: the test did not test a resume", proxy.cut.Load(), rewinds)
	}
}

// A resumption that cannot finish before the caller's context ends (the durable name is held by
// another subscriber meanwhile) is taken up again by the next call of Next, instead of leaving the
// subscription waiting for deliveries that never come.
func TestResumeCutShortByTheContextGoesOnInTheNextCall(t *testing.T) {
	b := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	other, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{b.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const count = 200
	p := other.NewProducer(gregormq.ProducerConfig{BatchRecordsMax: 1})
	for i := range count {
		if err := p.SendAsync(ctx, "resume-short", gregormq.Message{Value: []byte(fmt.Sprint(i))}, func(gregormq.Result, error) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	proxy := startCuttingProxy(t, b.addr, 0, 0)
	cl, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{proxy.ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cfg := gregormq.SubscribeConfig{From: gregormq.FromEarliest, Durable: "d", WindowMessages: 10}
	sub, err := cl.Subscribe(ctx, "resume-short", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); err != nil {
		t.Fatal(err)
	}
	// Nothing resumes before the next Next: the other subscriber takes the durable name first,
	// once the broker has seen the connection closed.
	proxy.cutAll()
	var held *gregormq.Subscription
	for held == nil {
		if held, err = other.Subscribe(ctx, "resume-short", cfg); err != nil && !errors.Is(err, gregormq.ErrSubscriptionInUse) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// What is queued comes first; then the resumption meets SUBSCRIPTION_IN_USE until the
	// context ends.
	for {
		short, stop := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := sub.Next(short)
		stop()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := held.Close(ctx); err != nil {
		t.Fatal(err)
	}
	next, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if _, err := sub.Next(next); err != nil {
		t.Fatalf("the subscription did not resume once the name was free: %v", err)
	}
}
