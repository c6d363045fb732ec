package gregormq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Start values of SUBSCRIBE (docs/protocol.md §8.2).
const (
	startEarliest  = 0
	startLatest    = 1
	startOffset    = 2
	startTimestamp = 3
)

// From is where a subscription starts: FromEarliest, FromLatest, FromOffset or FromTimestamp.
type From struct {
	start int
	value int64
}

var (
	// FromEarliest starts at the partition's log start.
	FromEarliest = From{start: startEarliest}
	// FromLatest starts at the high watermark: only messages published from now on.
	FromLatest = From{start: startLatest}
)

// FromOffset starts at an offset, which must lie between the log start and the high watermark.
func FromOffset(offset int64) From { return From{start: startOffset, value: offset} }

// FromTimestamp starts at the first batch whose newest record is at or after t.
func FromTimestamp(t time.Time) From { return From{start: startTimestamp, value: t.UnixMilli()} }

// SubscribeConfig configures a subscription; the zero value reads partition 0 from the latest
// offset, acknowledging by hand with a 30 s ack timeout and a window of 1000 messages and 1 MiB.
type SubscribeConfig struct {
	Partition int
	From      From
	// Durable names a subscription whose acknowledged progress the broker keeps; a later
	// subscription with the same name resumes after the last acknowledged offset.
	Durable string
	// AckTimeout is how long the broker waits for an acknowledgement before redelivering; default
	// 30 s. NoAcks turns acknowledgements off (at-most-once).
	AckTimeout time.Duration
	NoAcks     bool
	// WindowMessages and WindowBytes are the credit the broker may use ahead of Next: it never
	// sends more than this (plus one batch) unread. Defaults 1000 and 1 MiB.
	WindowMessages int
	WindowBytes    int
}

// ReceivedMessage is one delivered record.
type ReceivedMessage struct {
	Topic       string
	Partition   int
	Offset      int64
	Timestamp   time.Time
	Key         []byte
	Value       []byte
	Headers     []Header
	Redelivered bool
}

// Subscription receives the messages of one partition. Next is meant for one goroutine; Ack and
// Close may be called from any.
type Subscription struct {
	cl    *Client
	id    uint32
	topic string
	cfg   SubscribeConfig

	// StartOffset is the first offset the broker said it would deliver.
	StartOffset int64

	mu        sync.Mutex
	c         *conn
	queue     []*ReceivedMessage
	credits   []delivered // per delivery: how many messages of it are still queued, and its bytes
	owedMsgs  int
	owedB     int
	next      int64 // the offset after the last one handed out by Next
	handedOut int64 // the highest offset Next handed out, -1 for none
	recvNext  int64 // the offset the next new delivered record must have
	acked     int64
	lostErr   error
	// resumeGivesUp is when a resubscription meeting NOT_LEADER gives up; zero while none is under
	// way. It outlives a Next whose context ends first.
	resumeGivesUp time.Time
	closed        bool
	wake          chan struct{}
}

type delivered struct {
	left  int
	bytes int
}

// Subscribe subscribes to one partition of a topic and waits for the broker's answer. It fails
// with ErrOffsetOutOfRange, ErrSubscriptionInUse (a durable name held by another live
// subscriber), ErrUnknownTopic (no auto-creation) or ErrUnknownPartition.
func (cl *Client) Subscribe(ctx context.Context, topic string, cfg SubscribeConfig) (*Subscription, error) {
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.WindowMessages <= 0 {
		cfg.WindowMessages = 1000
	}
	if cfg.WindowBytes <= 0 {
		cfg.WindowBytes = 1 << 20
	}
	s := &Subscription{cl: cl, topic: topic, cfg: cfg, wake: make(chan struct{}, 1), acked: -1, handedOut: -1}
	ctx, cancel := cl.withTimeout(ctx)
	defer cancel()
	if err := s.open(ctx, cfg.From, time.Now().Add(cl.cfg.RequestTimeout)); err != nil {
		return nil, err
	}
	s.StartOffset = s.next
	cl.mu.Lock()
	cl.subs[s] = struct{}{}
	cl.mu.Unlock()
	return s, nil
}

// resubscribeNotLeaderWait is how long a subscription resuming after a lost connection keeps
// asking while the nodes answer NOT_LEADER (a leader being elected, a replica catching up after
// a restart).
const resubscribeNotLeaderWait = 60 * time.Second

// notLeaderPause is the pause before asking again after the attempt-th NOT_LEADER: 100 ms more
// each time, at most 1 s (a leader is elected, or a replica catches up, within seconds).
func notLeaderPause(attempt int) time.Duration {
	return min(time.Duration(attempt)*100*time.Millisecond, time.Second)
}

// open subscribes where the partition is served. In a cluster only the partition's leader, or a
// replica keeping up with it, serves reads; another node answers NOT_LEADER (docs/protocol.md
// §8.2). Then the subscription goes to the leader the cluster's metadata names, asking again with
// a growing pause while none is known or it refuses too, until deadline.
func (s *Subscription) open(ctx context.Context, from From, deadline time.Time) error {
	c, err := s.cl.conn(ctx)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := s.start(ctx, c, from)
		if !errors.Is(err, ErrNotLeader) || !time.Now().Before(deadline) {
			return err
		}
		next := s.cl.leaderConn(ctx, s.topic, s.cfg.Partition)
		if next == nil {
			if next, err = s.cl.conn(ctx); err != nil {
				return err
			}
		}
		// Straight to a newly named leader; the same node again waits a little first.
		if next == c || attempt > 1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(notLeaderPause(attempt)):
			}
		}
		c = next
	}
}

// start sends SUBSCRIBE on c.
func (s *Subscription) start(ctx context.Context, c *conn, from From) error {
	s.cl.mu.Lock()
	s.cl.nextSub++
	id := s.cl.nextSub
	s.cl.mu.Unlock()
	s.mu.Lock()
	s.id, s.c = id, c
	s.queue, s.credits, s.owedMsgs, s.owedB, s.lostErr = nil, nil, 0, 0, nil
	// The reader may hand over this subscription's first deliveries before this goroutine has
	// read the SUBSCRIBE answer: they must not be judged against the last subscription's position
	// (a resumed subscription dropped them all, and the credit they took was never given back).
	s.recvNext = 0
	s.mu.Unlock()
	c.addSub(s)
	ack := uint32(s.cfg.AckTimeout / time.Millisecond)
	if s.cfg.NoAcks {
		ack = 0
	}
	resp, err := c.request(ctx, OpSubscribe, Msg{"subscriptionId": id, "topic": s.topic,
		"partition": s.cfg.Partition, "start": from.start, "startValue": from.value,
		"durableName": s.cfg.Durable, "ackTimeoutMs": ack, "creditMessages": s.cfg.WindowMessages,
		"creditBytes": s.cfg.WindowBytes})
	if err != nil {
		c.removeSub(id)
		return err
	}
	s.mu.Lock()
	s.next = resp["startOffset"].(int64)
	s.recvNext = max(s.recvNext, s.next)
	s.mu.Unlock()
	return nil
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// onDeliver queues a DELIVER's records at or after its first offset (called by the reader).
func (s *Subscription) onDeliver(m Msg) {
	first := m["firstOffset"].(int64)
	redelivery := m["redelivery"].(int64) == 1
	raw, _ := m["records"].([]byte)
	// The delivery's messages share one allocation, grown batch by batch: Next hands out
	// pointers into it.
	var msgs []ReceivedMessage
	err := eachRecord(raw, 64<<20, func(h BatchHeader) {
		msgs = slices.Grow(msgs, int(h.RecordCount))
	}, func(r Record) {
		msgs = append(msgs, ReceivedMessage{Topic: s.topic, Partition: s.cfg.Partition, Offset: r.Offset,
			Timestamp: time.UnixMilli(r.Timestamp), Key: r.Key, Value: r.Value, Headers: r.Headers})
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.signal()
	if err != nil {
		s.lostErr = fmt.Errorf("gregormq: a delivery for %s/%d does not decode: %w", s.topic, s.cfg.Partition, err)
		return
	}
	if redelivery {
		// The broker rewound to its first unacknowledged offset: what is queued from there on
		// comes again, and the credit it took is given back.
		keep := s.queue[:0]
		for _, q := range s.queue {
			if q.Offset < first {
				keep = append(keep, q)
			} else {
				s.owedMsgs++
			}
		}
		clear(s.queue[len(keep):])
		s.queue = keep
		for i := range s.credits {
			s.credits[i].left = 0
		}
		s.recvNext = min(s.recvNext, first)
	}
	s.queue = slices.Grow(s.queue, len(msgs))
	n, skipped := 0, 0
	for i := range msgs {
		rm := &msgs[i]
		if rm.Offset < first {
			continue // before the offset asked for: in the batch, not charged to the window
		}
		if rm.Offset < s.recvNext {
			// Seen already: never handed out, but the broker charged the window for it, so its
			// credit goes back (otherwise redeliveries drain the window and the subscription stalls).
			skipped++
			continue
		}
		s.recvNext = rm.Offset + 1
		rm.Redelivered = rm.Offset <= s.handedOut
		s.queue = append(s.queue, rm)
		n++
	}
	s.credits = append(s.credits, delivered{left: n, bytes: len(raw)})
	s.owedMsgs += skipped
	if n == 0 || skipped > 0 {
		s.payBack()
	}
}

// onLost is called by the connection when it ends; Next resubscribes.
func (s *Subscription) onLost(c *conn, err error) {
	s.mu.Lock()
	if s.c == c {
		s.lostErr = err
	}
	s.mu.Unlock()
	s.signal()
}

// payBack returns the credit of deliveries fully read once it reaches half the window; s.mu held.
func (s *Subscription) payBack() {
	for len(s.credits) > 0 && s.credits[0].left == 0 {
		s.owedB += s.credits[0].bytes
		s.credits = s.credits[1:]
	}
	if s.owedMsgs*2 >= s.cfg.WindowMessages || s.owedB*2 >= s.cfg.WindowBytes {
		_, _, _ = s.c.send(OpCredit, Msg{"subscriptionId": s.id, "messages": s.owedMsgs, "bytes": s.owedB}, true)
		s.owedMsgs, s.owedB = 0, 0
	}
}

// Next waits for the next message. Messages come in offset order; after a redelivery (an ack
// timeout) or a reconnect, messages seen before may come again, marked Redelivered.
func (s *Subscription) Next(ctx context.Context) (*ReceivedMessage, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		if len(s.queue) > 0 {
			m := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.next = m.Offset + 1
			s.handedOut = max(s.handedOut, m.Offset)
			s.owedMsgs++
			for i := range s.credits {
				if s.credits[i].left > 0 {
					s.credits[i].left--
					break
				}
			}
			s.payBack()
			s.mu.Unlock()
			return m, nil
		}
		lost := s.lostErr
		s.mu.Unlock()
		if lost != nil {
			if !errors.Is(lost, ErrConnectionLost) {
				return nil, lost
			}
			if err := s.resume(ctx); err != nil {
				return nil, err
			}
			continue
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// resume subscribes again after a lost connection: with acknowledgements, from after the last
// acknowledged offset (or where the subscription started), so what was handed out but not
// acknowledged comes again, marked Redelivered, as the broker would redeliver it; without, from
// after the last message handed out. A durable subscription resumes where its acknowledgements
// left it whatever it asks. In a cluster it resumes wherever the partition is served now,
// following NOT_LEADER for up to a minute.
func (s *Subscription) resume(ctx context.Context) error {
	s.mu.Lock()
	from := FromOffset(s.next)
	if !s.cfg.NoAcks {
		from = FromOffset(s.StartOffset)
		if s.acked >= 0 {
			from = FromOffset(s.acked + 1)
		}
	}
	old := s.c
	if s.resumeGivesUp.IsZero() {
		s.resumeGivesUp = time.Now().Add(resubscribeNotLeaderWait)
	}
	deadline := s.resumeGivesUp
	s.mu.Unlock()
	old.removeSub(s.id)
	for {
		err := s.open(ctx, from, deadline)
		if err == nil {
			s.mu.Lock()
			s.resumeGivesUp = time.Time{}
			s.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			// The caller's context ended first: the next call of Next resumes again.
			s.keep(fmt.Errorf("%w: resubscribing to %s/%d: %v", ErrConnectionLost, s.topic, s.cfg.Partition, err))
			return ctx.Err()
		}
		if !errors.Is(err, ErrConnectionLost) && !errors.Is(err, ErrSubscriptionInUse) {
			s.keep(err)
			return err
		}
		select {
		case <-ctx.Done():
			s.keep(fmt.Errorf("%w: resubscribing to %s/%d: %v", ErrConnectionLost, s.topic, s.cfg.Partition, err))
			return ctx.Err()
		case <-time.After(s.cl.cfg.ReconnectBackoff):
		}
	}
}

// keep remembers why the subscription is not subscribed now, for the next call of Next: a lost
// connection is resumed again, anything else is returned.
func (s *Subscription) keep(err error) {
	s.mu.Lock()
	s.lostErr = err
	s.mu.Unlock()
	s.signal()
}

// Ack acknowledges every offset up to and including offset (acknowledgements are cumulative).
func (s *Subscription) Ack(offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if offset <= s.acked {
		return nil
	}
	s.acked = offset
	_, _, err := s.c.send(OpAck, Msg{"subscriptionId": s.id, "offset": offset}, true)
	return err
}

// Close ends the subscription; a durable one keeps its acknowledged progress on the broker.
func (s *Subscription) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c, id := s.c, s.id
	s.mu.Unlock()
	s.signal()
	s.cl.mu.Lock()
	delete(s.cl.subs, s)
	s.cl.mu.Unlock()
	ctx, cancel := s.cl.withTimeout(ctx)
	defer cancel()
	_, err := c.request(ctx, OpUnsubscribe, Msg{"subscriptionId": id})
	c.removeSub(id)
	if errors.Is(err, ErrConnectionLost) {
		return nil
	}
	return err
}
