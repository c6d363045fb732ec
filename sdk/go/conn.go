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

// A connection's frame buffer starts at frameBufferBytesInitial and is kept while it is at most
// frameBufferBytesKeptMax: a default producer's batches (256 KiB) reuse it, and a rare bigger
// frame does not pin its memory for the connection's life.
const (
	frameBufferBytesInitial = 4 * 1024
	frameBufferBytesKeptMax = 1 << 20
)

// result is the answer to one request: a response payload or an error.
type result struct {
	payload []byte
	err     error
}

// conn is one handshaken connection to a broker. A reader goroutine matches responses to requests
// by correlation id and hands DELIVER pushes to the subscription they name.
type conn struct {
	nc              net.Conn
	addr            string
	payloadBytesMax int

	wmu sync.Mutex // serialises writes, so frames never interleave
	bw  *bufio.Writer
	// wbuf is where send builds each frame, kept between frames up to frameBufferBytesKeptMax.
	wbuf []byte

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
		bw: bufio.NewWriterSize(nc, 64*1024), wbuf: make([]byte, 0, frameBufferBytesInitial), pending: map[uint32]chan result{},
		subs: map[uint32]*Subscription{}, done: make(chan struct{})}
	go c.readLoop()
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

// send writes one request and returns the channel its answer arrives on (nil for a one-way
// opcode, whose only possible answer is an error the broker reports on the connection).
func (c *conn) send(op uint16, m Msg, oneWay bool) (uint32, chan result, error) {
	s := OpSchemas[OpNames[op]][0]
	// The frame is built in the connection's write buffer, which a PRODUCE's batch grows once and
	// later frames reuse, under wmu so it is written before anyone builds the next.
	c.wmu.Lock()
	frame, err := AppendPayload(c.wbuf[:HeaderBytes], s, m)
	if err != nil {
		c.wmu.Unlock()
		return 0, nil, err
	}
	c.wbuf = frame[:0]
	if cap(c.wbuf) > frameBufferBytesKeptMax {
		c.wbuf = make([]byte, 0, frameBufferBytesInitial)
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		c.wmu.Unlock()
		return 0, nil, err
	}
	if len(frame)-HeaderBytes > c.payloadBytesMax {
		c.mu.Unlock()
		c.wmu.Unlock()
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
	_, err = c.bw.Write(frame)
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.close(fmt.Errorf("%w: %s: %v", ErrConnectionLost, c.addr, err))
	}
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
