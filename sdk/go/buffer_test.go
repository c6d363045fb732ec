package gregormq_test

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gregormq "gregormq.dev/sdk/go"
)

// A producer holds at most BufferBytesMax bytes of unanswered messages. With the broker stopped
// (SIGSTOP), SendAsync takes messages until the buffer is full, then waits for room and gives up
// with its context; once the broker runs again every queued message is stored and sends go on.
func TestSendAsyncWaitsForRoomWhileTheBufferIsFull(t *testing.T) {
	b := startBroker(t)
	defer b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{b.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const topic = "buffer-full"
	if err := cl.CreateTopic(ctx, topic, 1, nil); err != nil {
		t.Fatal(err)
	}
	const bufferBytes = 64 * 1024
	p := cl.NewProducer(gregormq.ProducerConfig{BufferBytesMax: bufferBytes})
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = p.Close(closeCtx)
	}()
	// The producer id is known and the connection open before the broker stops.
	if _, err := p.Send(ctx, topic, gregormq.Message{Value: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = b.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	value := make([]byte, 1000) // counted as 1016 bytes
	var answered, failed atomic.Int64
	queued := 0
	for {
		sendCtx, sendCancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := p.SendAsync(sendCtx, topic, gregormq.Message{Value: value}, func(_ gregormq.Result, err error) {
			if err != nil {
				failed.Add(1)
				t.Errorf("a queued message failed: %v", err)
			}
			answered.Add(1)
		})
		sendCancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("SendAsync with a full buffer: %v, not the context's deadline", err)
			}
			break
		}
		queued++
		if queued > 10*bufferBytes/1016 {
			t.Fatalf("SendAsync took %d messages of 1016 bytes with a buffer of %d", queued, bufferBytes)
		}
	}
	if want := bufferBytes / 1016; queued != want {
		t.Errorf("SendAsync took %d messages before the buffer was full, want %d", queued, want)
	}
	if err := b.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	for answered.Load() < int64(queued) {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d queued messages answered after the broker resumed", answered.Load(), queued)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := p.Send(ctx, topic, gregormq.Message{Value: []byte("after")}); err != nil {
		t.Fatalf("a send after the buffer emptied: %v", err)
	}
	if failed.Load() > 0 {
		t.Errorf("%d queued messages failed", failed.Load())
	}
}
