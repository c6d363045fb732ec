package gregormq

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"
)

// A broker that stops reading does not make a connection queue frames without end: once
// writeQueueBytesMax bytes wait for the writer, send waits too.
func TestWriteQueueIsBoundedWhenTheBrokerStopsReading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stalled := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		// Answer HELLO, then read nothing more.
		f, err := ReadFrame(bufio.NewReader(nc), FramePayloadBytesMaxDefault)
		if err == nil {
			resp, _ := AppendPayload(nil, OpSchemas["HELLO"][1],
				Msg{"version": 1, "brokerId": "stalled", "payloadBytesMax": 64 << 20, "codecs": 1})
			_, _ = nc.Write(AppendFrame(nil, OpHello, f.CorrelationID, FlagResponse, resp))
		}
		stalled <- nc
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialConn(ctx, ln.Addr().String(), &Config{ClientID: "stall-test"})
	if err != nil {
		t.Fatal(err)
	}
	nc := <-stalled
	defer nc.Close()
	const frameBytes, frames = 1 << 20, 256 // far more than the socket buffers and the queue hold
	batch := make([]byte, frameBytes)
	sent := make(chan int, frames)
	go func() {
		for i := range frames {
			m := Msg{"topic": "t", "partition": 0, "acks": 1, "timeoutMs": 1000, "batch": batch}
			if _, _, err := c.send(OpProduce, m, true); err != nil {
				return
			}
			sent <- i
		}
	}()
	time.Sleep(time.Second)
	c.wmu.Lock()
	queued := len(c.out)
	c.wmu.Unlock()
	if n := len(sent); n == frames {
		t.Fatalf("all %d frames of %d bytes were queued to a broker that reads nothing", frames, frameBytes)
	}
	if queued > writeQueueBytesMax+frameBytes+HeaderBytes+64 {
		t.Fatalf("%d bytes wait for the writer, over the limit of %d and one frame", queued, writeQueueBytesMax)
	}
	c.close(ErrConnectionLost)
}
