package gregormq

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Frames wait for the connection's writer in one buffer: a sender waits while writeQueueBytesMax
// bytes are waiting, and the writer keeps a written buffer for reuse while it is at most
// writeBufferBytesKeptMax, so a default producer's batches (256 KiB) reuse it and a rare bigger
// frame does not pin its memory for the connection's life.
const (
	writeQueueBytesMax      = 4 << 20
	writeBufferBytesKeptMax = 1 << 20
)

// result is the answer to one request: a response payload or an error.
type result struct {
	payload []byte
	err     error
}

// conn is one handshaken connection to a broker. A reader goroutine matches responses to requests
// by correlation id and hands DELIVER pushes to the subscription they name; a writer goroutine
// writes the frames send queues, so a sender holding a lock (a producer's partition) is not held
// up by the socket, and frames queued together leave in one write.
type conn struct {
	nc              net.Conn
	addr            string
	payloadBytesMax int

	wmu sync.Mutex
	// out holds the frames queued for the writer, back to back in the order queued.
	out []byte
	// wcond wakes the writer when out has frames or the connection closes, and senders waiting
	// for out to go under writeQueueBytesMax.
	wcond   *sync.Cond
	wclosed bool

	mu      sync.Mutex
	nextID  uint32
	pending map[uint32]chan result
	subs    map[uint32]*Subscription
	err     error // why the connection ended; set once
	done    chan struct{}
}

func dialConn(ctx context.Context, addr string, cfg *Config) (*conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &conn{nc: nc, addr: addr, payloadBytesMax: FramePayloadBytesMaxDefault,
		pending: map[uint32]chan result{}, subs: map[uint32]*Subscription{}, done: make(chan struct{})}
	c.wcond = sync.NewCond(&c.wmu)
	go c.readLoop()
	go c.writeLoop()
	hello := Msg{"versionMin": 1, "versionMax": 1, "clientId": cfg.ClientID, "credential": cfg.Credential}
	resp, err := c.request(ctx, OpHello, hello)
	if err != nil {
		c.close(err)
		return nil, fmt.Errorf("gregormq: handshake with %s failed: %w", addr, err)
	}
	c.mu.Lock()
	c.payloadBytesMax = int(resp["payloadBytesMax"].(int64))
	c.mu.Unlock()
	return c, nil
}

func (c *conn) readLoop() {
	br := bufio.NewReaderSize(c.nc, 64*1024)
	for {
		f, err := ReadFrame(br, FramePayloadBytesMaxDefault)
		if err != nil {
			c.close(fmt.Errorf("%w: %s: %v", ErrConnectionLost, c.addr, err))
			return
		}
		if f.Flags&FlagPush != 0 {
			c.deliver(f)
			continue
		}
		var res result
		if f.Flags&FlagError != 0 {
			m, err := DecodePayload(ErrorSchema, f.Payload)
			if err != nil {
				res.err = err
			} else {
				res.err = &Error{Code: Code(m["code"].(int64)), Message: m["message"].(string)}
			}
			if f.CorrelationID == 0 {
				// An error the broker cannot tie to a request ends the connection (§3.3).
				c.close(fmt.Errorf("%w: %s: %v", ErrConnectionLost, c.addr, res.err))
				return
			}
		} else {
			res.payload = f.Payload
		}
		c.mu.Lock()
		ch := c.pending[f.CorrelationID]
		delete(c.pending, f.CorrelationID)
		c.mu.Unlock()
		if ch != nil {
			ch <- res
		}
	}
}

func (c *conn) deliver(f Frame) {
	m, err := DecodePayload(OpSchemas["DELIVER"][0], f.Payload)
	if err != nil {
		c.close(fmt.Errorf("%w: %s sent a DELIVER that does not decode: %v", ErrConnectionLost, c.addr, err))
		return
	}
	c.mu.Lock()
	s := c.subs[uint32(m["subscriptionId"].(int64))]
	c.mu.Unlock()
	if s != nil { // a DELIVER for a subscription this side no longer knows is ignored (§8.3)
		s.onDeliver(m)
	}
}

// close ends the connection once; every waiting request fails with err.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = map[uint32]chan result{}
	// A copy: a subscription that resumes removes itself from c.subs while this loop runs.
	subs := make([]*Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	c.nc.Close()
	c.wmu.Lock()
	c.wclosed = true
	c.out = nil
	c.wcond.Broadcast()
	c.wmu.Unlock()
	close(c.done)
	for _, ch := range pending {
		ch <- result{err: err}
	}
	for _, s := range subs {
		s.onLost(c, err)
	}
}

func (c *conn) closed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// writeLoop writes the queued frames until the connection closes; a failed write closes it.
func (c *conn) writeLoop() {
	var spare []byte
	for {
		c.wmu.Lock()
		for len(c.out) == 0 && !c.wclosed {
			c.wcond.Wait()
		}
		if c.wclosed {
			c.wmu.Unlock()
			return
		}
		buf := c.out
		c.out = spare[:0]
		c.wcond.Broadcast()
		c.wmu.Unlock()
		if _, err := c.nc.Write(buf); err != nil {
			c.close(fmt.Errorf("%w: %s: %v", ErrConnectionLost, c.addr, err))
			return
		}
		spare = nil
		if cap(buf) <= writeBufferBytesKeptMax {
			spare = buf
		}
	}
}

// send queues one request for the writer and returns the channel its answer arrives on (nil for a
// one-way opcode, whose only possible answer is an error the broker reports on the connection).
// Requests leave in the order send is called.
func (c *conn) send(op uint16, m Msg, oneWay bool) (uint32, chan result, error) {
	s := OpSchemas[OpNames[op]][0]
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(c.out) >= writeQueueBytesMax && !c.wclosed {
		c.wcond.Wait()
	}
	start := len(c.out)
	var header [HeaderBytes]byte
	out, err := AppendPayload(append(c.out, header[:]...), s, m)
	if err != nil {
		c.out = c.out[:start]
		return 0, nil, err
	}
	frame := out[start:]
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		c.out = out[:start]
		return 0, nil, err
	}
	if len(frame)-HeaderBytes > c.payloadBytesMax {
		c.mu.Unlock()
		c.out = out[:start]
		return 0, nil, &Error{Code: CodeFrameTooLarge, Message: fmt.Sprintf(
			"a payload of %d bytes is over the broker's limit of %d", len(frame)-HeaderBytes, c.payloadBytesMax)}
	}
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	id := c.nextID
	var ch chan result
	if !oneWay {
		ch = make(chan result, 1)
		c.pending[id] = ch
	}
	c.mu.Unlock()
	putHeader(frame, op, id, 0, len(frame)-HeaderBytes)
	c.out = out
	c.wcond.Broadcast()
	return id, ch, nil
}

// request sends a request and waits for its decoded response.
func (c *conn) request(ctx context.Context, op uint16, m Msg) (Msg, error) {
	id, ch, err := c.send(op, m, false)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, op, id, ch)
}

func (c *conn) wait(ctx context.Context, op uint16, id uint32, ch chan result) (Msg, error) {
	select {
	case res := <-ch:
		if res.err != nil {
			return nil, res.err
		}
		return DecodePayload(OpSchemas[OpNames[op]][1], res.payload)
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (c *conn) addSub(s *Subscription) {
	c.mu.Lock()
	c.subs[s.id] = s
	c.mu.Unlock()
}

func (c *conn) removeSub(id uint32) {
	c.mu.Lock()
	delete(c.subs, id)
	c.mu.Unlock()
}

// pingEvery keeps an idle connection checked, so a dead broker is noticed.
func (c *conn) pingEvery(d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 2*d)
			_, err := c.request(ctx, OpPing, Msg{})
			cancel()
			if err != nil && errors.Is(err, context.DeadlineExceeded) {
				c.close(fmt.Errorf("%w: %s did not answer PING in %v", ErrConnectionLost, c.addr, 2*d))
			}
		}
	}
}
