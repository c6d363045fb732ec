package gregormq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Config configures a Client. Only Servers is required.
type Config struct {
	// Servers are bootstrap addresses ("host:port"). The client connects to the first that answers
	// and, when its connection is lost, tries the others in turn.
	Servers []string
	// ClientID names the client in the broker's logs; default "gregormq-go".
	ClientID string
	// Credential is presented in HELLO when the broker requires one; nil for none.
	Credential []byte
	// RequestTimeout bounds a call whose context has no deadline; default 30 s.
	RequestTimeout time.Duration
	// ReconnectBackoff is the pause between two rounds over Servers when none answers; default 50 ms.
	ReconnectBackoff time.Duration
	// PingInterval is how often an idle connection is checked; default 5 s.
	PingInterval time.Duration
}

// Client is a connection to a GregorMQ broker, reconnecting to any of its bootstrap servers when
// the connection is lost. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu              sync.Mutex
	cur             *conn
	leaders         map[string]*conn // connections to other nodes, by address, for subscriptions
	next            int              // index in cfg.Servers to try first on the next connect
	closed          bool
	nextSub         uint32
	subs            map[*Subscription]struct{}
	prods           map[*Producer]struct{}
	groups          map[*GroupConsumer]struct{}
	counts          map[string]int // partition counts by topic, for key hashing
	dialMu          sync.Mutex     // one reconnect at a time
	defaultProducer *Producer
}

// Dial connects to the first of cfg.Servers that completes the handshake.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("gregormq: Config.Servers is empty: give at least one host:port")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "gregormq-go"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.ReconnectBackoff <= 0 {
		cfg.ReconnectBackoff = 50 * time.Millisecond
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 5 * time.Second
	}
	cl := &Client{cfg: cfg, subs: map[*Subscription]struct{}{}, prods: map[*Producer]struct{}{},
		groups: map[*GroupConsumer]struct{}{}, counts: map[string]int{}, leaders: map[string]*conn{}}
	if _, err := cl.conn(ctx); err != nil {
		return nil, err
	}
	return cl, nil
}

// Addr is the address of the broker the client is connected to now ("" when disconnected).
func (cl *Client) Addr() string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.cur == nil || cl.cur.closed() != nil {
		return ""
	}
	return cl.cur.addr
}

func (cl *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, cl.cfg.RequestTimeout)
}

// conn returns the live connection, connecting (to the servers in turn) if there is none.
func (cl *Client) conn(ctx context.Context) (*conn, error) {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil, ErrClosed
	}
	if c := cl.cur; c != nil && c.closed() == nil {
		cl.mu.Unlock()
		return c, nil
	}
	cl.mu.Unlock()
	cl.dialMu.Lock()
	defer cl.dialMu.Unlock()
	var errs []error
	for {
		cl.mu.Lock()
		if c := cl.cur; c != nil && c.closed() == nil {
			cl.mu.Unlock()
			return c, nil
		}
		start := cl.next
		cl.mu.Unlock()
		for i := range cl.cfg.Servers {
			k := (start + i) % len(cl.cfg.Servers)
			c, err := dialConn(ctx, cl.cfg.Servers[k], &cl.cfg)
			if err != nil {
				errs = append(errs, err)
				var ge *Error
				if errors.As(err, &ge) && ge.Code == CodeAuthenticationFailed {
					return nil, err
				}
				continue
			}
			cl.mu.Lock()
			if cl.closed {
				cl.mu.Unlock()
				c.close(ErrClosed)
				return nil, ErrClosed
			}
			cl.cur = c
			// After a loss the next connect starts with the server after this one.
			cl.next = (k + 1) % len(cl.cfg.Servers)
			cl.mu.Unlock()
			go c.pingEvery(cl.cfg.PingInterval)
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gregormq: no server of %v answered: %w", cl.cfg.Servers,
				errors.Join(append(errs, ctx.Err())...))
		case <-time.After(cl.cfg.ReconnectBackoff):
		}
	}
}

// call sends a request, reconnecting and sending it again once if the connection was lost before
// the answer came. Only requests that are safe to repeat go through here.
func (cl *Client) call(ctx context.Context, op uint16, m Msg) (Msg, error) {
	ctx, cancel := cl.withTimeout(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		c, err := cl.conn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.request(ctx, op, m)
		if err != nil && errors.Is(err, ErrConnectionLost) && attempt < 3 && ctx.Err() == nil {
			continue
		}
		return resp, err
	}
}

// Ping checks that the broker answers.
func (cl *Client) Ping(ctx context.Context) error {
	_, err := cl.call(ctx, OpPing, Msg{})
	return err
}

// Close closes group members (they leave their groups), flushes and closes producers, ends
// subscriptions and closes the connection.
func (cl *Client) Close() error {
	cl.mu.Lock()
	groups := make([]*GroupConsumer, 0, len(cl.groups))
	for g := range cl.groups {
		groups = append(groups, g)
	}
	prods := make([]*Producer, 0, len(cl.prods))
	for p := range cl.prods {
		prods = append(prods, p)
	}
	subs := make([]*Subscription, 0, len(cl.subs))
	for s := range cl.subs {
		subs = append(subs, s)
	}
	cl.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), cl.cfg.RequestTimeout)
	defer cancel()
	for _, g := range groups {
		_ = g.Close(ctx)
	}
	for _, p := range prods {
		_ = p.Close(ctx)
	}
	for _, s := range subs {
		_ = s.Close(ctx)
	}
	cl.mu.Lock()
	cl.closed = true
	c := cl.cur
	leaders := cl.leaders
	cl.leaders = map[string]*conn{}
	cl.mu.Unlock()
	if c != nil {
		c.close(ErrClosed)
	}
	for _, lc := range leaders {
		lc.close(ErrClosed)
	}
	return nil
}

// leaderConn is a connection to the node that leads the partition as the cluster's metadata
// names it now: the client's own connection if that is the node, else one opened for
// subscriptions and kept. It answers nil when no leader is known (none elected yet, a single
// node, or one that cannot be reached now).
func (cl *Client) leaderConn(ctx context.Context, topic string, partition int) *conn {
	resp, err := cl.call(ctx, OpMetadata, Msg{"topics": []Msg{{"name": topic}}, "autoCreate": 0})
	if err != nil {
		return nil
	}
	topics := resp["topics"].([]Msg)
	if len(topics) != 1 {
		return nil
	}
	leader := ""
	for _, p := range topics[0]["partitions"].([]Msg) {
		if int(p["partition"].(int64)) == partition {
			leader = p["leader"].(string)
		}
	}
	addr := ""
	for _, n := range resp["nodes"].([]Msg) {
		if leader != "" && n["id"].(string) == leader {
			addr = net.JoinHostPort(n["host"].(string), strconv.FormatInt(n["clientPort"].(int64), 10))
		}
	}
	if addr == "" {
		return nil
	}
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil
	}
	for _, c := range []*conn{cl.cur, cl.leaders[addr]} {
		if c != nil && c.addr == addr && c.closed() == nil {
			cl.mu.Unlock()
			return c
		}
	}
	cl.mu.Unlock()
	c, err := dialConn(ctx, addr, &cl.cfg)
	if err != nil {
		return nil
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if old := cl.leaders[addr]; cl.closed || (old != nil && old.closed() == nil) {
		// Closed meanwhile, or another subscription opened one first: use that one.
		c.close(ErrClosed)
		if cl.closed {
			return nil
		}
		return old
	}
	cl.leaders[addr] = c
	go c.pingEvery(cl.cfg.PingInterval)
	return c
}

// partitions is the topic's partition count, asked of the broker once (creating the topic if the
// broker auto-creates topics).
func (cl *Client) partitions(ctx context.Context, topic string) (int, error) {
	cl.mu.Lock()
	n, ok := cl.counts[topic]
	cl.mu.Unlock()
	if ok {
		return n, nil
	}
	resp, err := cl.call(ctx, OpMetadata, Msg{"topics": []Msg{{"name": topic}}, "autoCreate": 1})
	if err != nil {
		return 0, err
	}
	topics := resp["topics"].([]Msg)
	if len(topics) != 1 {
		return 0, fmt.Errorf("gregormq: METADATA for %s answered %d topics", topic, len(topics))
	}
	if code := Code(topics[0]["error"].(int64)); code != 0 {
		return 0, &Error{Code: code, Message: "topic " + topic}
	}
	n = len(topics[0]["partitions"].([]Msg))
	if n == 0 {
		return 0, &Error{Code: CodeUnknownTopic, Message: "topic " + topic + " has no partitions"}
	}
	cl.mu.Lock()
	cl.counts[topic] = n
	cl.mu.Unlock()
	return n, nil
}

func (cl *Client) forgetTopic(topic string) {
	cl.mu.Lock()
	delete(cl.counts, topic)
	cl.mu.Unlock()
}
