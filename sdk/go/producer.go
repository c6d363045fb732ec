package gregormq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Acks is how much of a produce the broker confirms (docs/protocol.md §8.1).
type Acks uint8

// Acks values. The zero value is AcksLeader, the default.
const (
	AcksLeader Acks = iota
	AcksNone
	AcksQuorum
)

// wire is the acks value PRODUCE carries.
func (a Acks) wire() int {
	switch a {
	case AcksNone:
		return 0
	case AcksQuorum:
		return 2
	}
	return 1
}

// BatchesInFlightPerPartitionMax is how many batches of one partition a producer has in flight at
// most: the broker remembers the last 5 batches of each producer, so a retry finds its original.
const BatchesInFlightPerPartitionMax = 5

// Message is a record to publish.
type Message struct {
	Key     []byte
	Value   []byte
	Headers []Header
	// Timestamp defaults to now.
	Timestamp time.Time
	// Partition picks the partition; nil hashes Key (murmur2, as Kafka does) or, without a key,
	// spreads messages over the partitions batch by batch.
	Partition *int
}

// PartitionOf returns a pointer to p, for Message.Partition.
func PartitionOf(p int) *int { return &p }

// Result is where a published message was stored; Offset is -1 with AcksNone.
type Result struct {
	Topic     string
	Partition int
	Offset    int64
}

// ProducerConfig configures a Producer; the zero value gives the defaults.
type ProducerConfig struct {
	// Linger is how long a batch may wait for more messages; default 0 (send when the partition
	// has room in flight).
	Linger time.Duration
	// BatchRecordsMax ends a batch at this many records; default 10 000.
	BatchRecordsMax int
	// BatchBytesMax ends a batch at about this many record bytes; default 256 KiB.
	BatchBytesMax int
	// Codec compresses each batch; default CodecNone.
	Codec Codec
	// Acks; default AcksLeader.
	Acks Acks
	// NotIdempotent turns off producer ids and sequence numbers. Idempotent producers (the
	// default, always off with AcksNone) retry a batch whose outcome is unknown without storing it
	// twice; others fail the batches in flight when the connection is lost.
	NotIdempotent bool
	// DeliveryTimeout is how long after its first send a batch is retried; default 2 minutes.
	DeliveryTimeout time.Duration
	// BufferBytesMax bounds the bytes of messages queued and not yet answered (as BatchBytesMax
	// counts them); default 64 MiB. SendAsync and Send wait for room, up to their context's
	// deadline. A message larger than the bound is taken when nothing else is queued.
	BufferBytesMax int
}

// Producer publishes messages in batches, pipelining up to 5 batches per partition. It is safe for
// concurrent use.
type Producer struct {
	cl  *Client
	cfg ProducerConfig

	mu         sync.Mutex
	parts      map[partKey]*partQueue
	sticky     map[string]int
	closed     bool
	wg         sync.WaitGroup
	producerID int64
	epoch      int64
	idOnce     sync.Mutex
	// bodies holds the buffers of stored uncompressed batches (*[]byte), for new batches.
	bodies sync.Pool
	budget byteBudget
}

// byteBudget bounds the bytes of messages queued and not yet answered.
type byteBudget struct {
	mu      sync.Mutex
	max     int
	used    int
	waiters int
	// room is closed (and replaced) when bytes are released while someone waits.
	room chan struct{}
}

// acquire takes n bytes, waiting for room until ctx ends; with nothing taken it always succeeds.
func (b *byteBudget) acquire(ctx context.Context, n int) error {
	b.mu.Lock()
	for b.used > 0 && b.used+n > b.max {
		if b.room == nil {
			b.room = make(chan struct{})
		}
		room := b.room
		b.waiters++
		b.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			b.mu.Lock()
			b.waiters--
			b.mu.Unlock()
			return ctx.Err()
		}
		b.mu.Lock()
		b.waiters--
	}
	b.used += n
	b.mu.Unlock()
	return nil
}

// release gives n bytes back and wakes whoever waits for room.
func (b *byteBudget) release(n int) {
	b.mu.Lock()
	b.used -= n
	if b.waiters > 0 && b.room != nil {
		close(b.room)
		b.room = nil
	}
	b.mu.Unlock()
}

// body returns a buffer of at least bytes for a batch, with the header's room taken.
func (p *Producer) body(bytes int) []byte {
	if b, ok := p.bodies.Get().(*[]byte); ok && cap(*b) >= bytes {
		return (*b)[:BatchHeaderBytes]
	}
	// An eighth more, so batches of about the same size go on reusing it.
	return make([]byte, BatchHeaderBytes, bytes+bytes/8)
}

type partKey struct {
	topic     string
	partition int
}

// openBatch is the batch a partition's messages join until it is full or has lingered enough.
type openBatch struct {
	b     batchBuilder
	dones []func(Result, error)
	// bytes is the estimate of the records' size that BatchBytesMax bounds.
	bytes int
}

type inflight struct {
	dones   []func(Result, error)
	batch   []byte
	ch      chan result
	first   time.Time
	oneWay  bool
	sendErr error
}

// partQueue batches and sends the messages of one partition, in order.
type partQueue struct {
	p         *Producer
	topic     string
	partition int

	mu   sync.Mutex
	cond *sync.Cond
	// open takes new messages; full batches wait in ready for room in flight, oldest first.
	open  openBatch
	ready []openBatch
	// lingerUntil is when the open batch is sent even if not full; lingerTimer wakes the sender
	// then.
	lingerUntil time.Time
	lingerTimer *time.Timer
	// lastBodyBytes sizes the next batch's buffer, so a batch of the same size is encoded with no
	// copying as it grows.
	lastBodyBytes int
	// sending is set while the sender has taken a batch that is not yet in flight.
	sending bool
	// flushes counts the Flush calls waiting for this partition: its batches do not linger.
	flushes int
	// answering is set while the batch just out of flight has its callbacks called: Flush waits
	// for them too.
	answering bool
	inflight  []*inflight
	sequence  int32
	closing   bool
	// recovering holds new batches back while closeGap renumbers the ones in flight.
	recovering bool
}

// NewProducer makes a producer with its own batching settings.
func (cl *Client) NewProducer(cfg ProducerConfig) *Producer {
	if cfg.BatchRecordsMax <= 0 {
		cfg.BatchRecordsMax = 10_000
	}
	if cfg.BatchBytesMax <= 0 {
		cfg.BatchBytesMax = 256 * 1024
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = 2 * time.Minute
	}
	if cfg.BufferBytesMax <= 0 {
		cfg.BufferBytesMax = 64 * 1024 * 1024
	}
	if cfg.Acks == AcksNone {
		cfg.NotIdempotent = true
	}
	p := &Producer{cl: cl, cfg: cfg, parts: map[partKey]*partQueue{}, sticky: map[string]int{}, producerID: -1}
	p.budget.max = cfg.BufferBytesMax
	cl.mu.Lock()
	cl.prods[p] = struct{}{}
	cl.mu.Unlock()
	return p
}

// Send publishes one message and waits until the broker has stored it.
func (p *Producer) Send(ctx context.Context, topic string, m Message) (Result, error) {
	type answer struct {
		r   Result
		err error
	}
	ch := make(chan answer, 1)
	if err := p.SendAsync(ctx, topic, m, func(r Result, err error) { ch <- answer{r, err} }); err != nil {
		return Result{}, err
	}
	select {
	case a := <-ch:
		return a.r, a.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// SendAsync queues one message; done is called once, from another goroutine, with where it was
// stored or why it was not. Messages to one partition are stored in the order queued. The message
// is copied into its batch before SendAsync returns, so its Key, Value and Headers may be reused at
// once. It waits while BufferBytesMax bytes of messages are queued and not yet answered, and
// returns ctx's error if that outlasts ctx. Otherwise it returns an error only if the message
// cannot be queued (no partition count for the topic, a closed producer).
func (p *Producer) SendAsync(ctx context.Context, topic string, m Message, done func(Result, error)) error {
	partition, err := p.partitionFor(ctx, topic, m)
	if err != nil {
		return err
	}
	ts := m.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	rec := Record{Timestamp: ts.UnixMilli(), Key: m.Key, Value: m.Value, Headers: m.Headers}
	size := len(m.Key) + len(m.Value) + 16
	for _, h := range m.Headers {
		size += len(h.Key) + len(h.Value) + 4
	}
	if err := p.budget.acquire(ctx, size); err != nil {
		return err
	}
	answered := done
	done = func(r Result, err error) {
		p.budget.release(size)
		answered(r, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.budget.release(size)
		return ErrClosed
	}
	key := partKey{topic, partition}
	q := p.parts[key]
	if q == nil {
		q = &partQueue{p: p, topic: topic, partition: partition}
		q.cond = sync.NewCond(&q.mu)
		if p.cfg.Linger > 0 {
			q.lingerTimer = time.AfterFunc(p.cfg.Linger, q.wake)
		}
		p.parts[key] = q
		p.wg.Add(2)
		go q.sendLoop()
		go q.completeLoop()
	}
	p.mu.Unlock()
	q.add(rec, size, done)
	return nil
}

// add encodes a message into the open batch, first closing that batch if the message would take
// it over BatchBytesMax. The sender is woken only when there is something new for it to do: a
// batch became full, or (without linger) the open batch got its first message.
func (q *partQueue) add(rec Record, size int, done func(Result, error)) {
	cfg := &q.p.cfg
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.open.dones) > 0 && q.open.bytes+size > cfg.BatchBytesMax {
		q.closeOpen()
	}
	if len(q.open.dones) == 0 {
		if q.open.b.body == nil && q.lastBodyBytes > 0 {
			q.open.b.body = q.p.body(q.lastBodyBytes + recordBytesMax(rec))
		}
		if cfg.Linger > 0 {
			q.lingerUntil = time.Now().Add(cfg.Linger)
			q.lingerTimer.Reset(cfg.Linger)
		} else {
			q.cond.Broadcast()
		}
	}
	q.open.b.add(rec)
	q.open.dones = append(q.open.dones, done)
	q.open.bytes += size
	if len(q.open.dones) >= cfg.BatchRecordsMax {
		q.closeOpen()
	}
}

// closeOpen moves the open batch to the ready ones and wakes the sender; q.mu held.
func (q *partQueue) closeOpen() {
	q.ready = append(q.ready, q.takeOpen())
	q.cond.Broadcast()
}

// takeOpen returns the open batch and opens an empty one; q.mu held.
func (q *partQueue) takeOpen() openBatch {
	b := q.open
	q.lastBodyBytes = len(b.b.body)
	q.open = openBatch{dones: make([]func(Result, error), 0, len(b.dones))}
	return b
}

// wake is the linger timer's callback: the sender looks at the open batch again. A timer that
// fires late, for a batch already sent, finds the next one's lingerUntil ahead and changes nothing.
func (q *partQueue) wake() {
	q.mu.Lock()
	q.cond.Broadcast()
	q.mu.Unlock()
}

// queued reports whether messages wait to be sent, or are between the queue and the batches in
// flight; q.mu held.
func (q *partQueue) queued() bool {
	return len(q.ready) > 0 || len(q.open.dones) > 0 || q.sending
}

func (p *Producer) partitionFor(ctx context.Context, topic string, m Message) (int, error) {
	if m.Partition != nil {
		return *m.Partition, nil
	}
	n, err := p.cl.partitions(ctx, topic)
	if err != nil {
		return 0, err
	}
	if m.Key != nil {
		return PartitionForKey(m.Key, n), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sticky[topic] % n, nil
}

// batchSent moves keyless messages of the topic on to the next partition (Kafka's sticky
// partitioning: keyless messages fill a batch before moving on).
func (p *Producer) batchSent(topic string) {
	p.mu.Lock()
	p.sticky[topic]++
	p.mu.Unlock()
}

// producerIDRetryPause is the pause before asking for a producer id again after a retriable error.
const producerIDRetryPause = 100 * time.Millisecond

func (p *Producer) ids(ctx context.Context) (int64, int16, error) {
	p.idOnce.Lock()
	defer p.idOnce.Unlock()
	for p.producerID < 0 {
		resp, err := p.cl.call(ctx, OpInitProducerID, Msg{})
		if err == nil {
			p.producerID, p.epoch = resp["producerId"].(int64), resp["producerEpoch"].(int64)
			break
		}
		// The controller hands out producer ids: while a cluster elects a new one the node asked
		// answers NOT_LEADER (or TIMEOUT); ask again within the delivery timeout.
		if !retriable(err) {
			return 0, 0, err
		}
		select {
		case <-ctx.Done():
			return 0, 0, err
		case <-time.After(producerIDRetryPause):
		}
	}
	return p.producerID, int16(p.epoch), nil
}

func (q *partQueue) sendLoop() {
	defer q.p.wg.Done()
	for {
		q.mu.Lock()
		var next openBatch
		for {
			if !q.queued() && q.closing {
				q.mu.Unlock()
				if q.lingerTimer != nil {
					q.lingerTimer.Stop()
				}
				return
			}
			if len(q.inflight) < BatchesInFlightPerPartitionMax {
				if len(q.ready) > 0 {
					next = q.ready[0]
					q.ready[0] = openBatch{}
					q.ready = q.ready[1:]
					q.sending = true
					break
				}
				if len(q.open.dones) > 0 && (q.p.cfg.Linger <= 0 || q.closing || q.flushes > 0 ||
					!time.Now().Before(q.lingerUntil)) {
					next = q.takeOpen()
					q.sending = true
					break
				}
			}
			q.cond.Wait()
		}
		q.mu.Unlock()
		q.sendBatch(next)
	}
}

func fail(dones []func(Result, error), err error) {
	for _, done := range dones {
		done(Result{}, err)
	}
}

func (q *partQueue) sendBatch(next openBatch) {
	cfg := &q.p.cfg
	msgs := next.dones
	opts := PlainBatch(cfg.Codec)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DeliveryTimeout)
	defer cancel()
	if !cfg.NotIdempotent {
		id, epoch, err := q.p.ids(ctx)
		if err != nil {
			fail(msgs, fmt.Errorf("gregormq: cannot get a producer id: %w", err))
			q.sent()
			return
		}
		opts.ProducerID, opts.ProducerEpoch = id, epoch
	}
	// The sequence is taken, the batch encoded and sent under one lock, so a failed batch's later
	// ones can be renumbered (resequence) without a batch slipping between.
	q.mu.Lock()
	for q.recovering {
		q.cond.Wait()
	}
	if !cfg.NotIdempotent {
		opts.BaseSequence = q.sequence
	}
	batch, err := next.b.seal(opts)
	if err != nil {
		q.mu.Unlock()
		fail(msgs, err)
		q.sent()
		return
	}
	if !cfg.NotIdempotent {
		q.sequence = addSequence(q.sequence, len(msgs))
	}
	f := &inflight{dones: msgs, batch: batch, first: time.Now(), oneWay: cfg.Acks == AcksNone}
	q.transmit(ctx, f)
	q.inflight = append(q.inflight, f)
	q.sending = false
	q.cond.Broadcast()
	q.mu.Unlock()
	q.p.batchSent(q.topic)
}

// sent records that the batch the sender took has its answer, so Flush stops waiting for it.
func (q *partQueue) sent() {
	q.mu.Lock()
	q.sending = false
	q.cond.Broadcast()
	q.mu.Unlock()
}

// addSequence adds n to a batch sequence number, which wraps from 2^31-1 to 0 (§8.1).
func addSequence(seq int32, n int) int32 {
	return int32((int64(seq) + int64(n)%(1<<31) + (1 << 31)) % (1 << 31))
}

// transmit sends one batch; called with q.mu held, so batches leave in order.
func (q *partQueue) transmit(ctx context.Context, f *inflight) {
	c, err := q.p.cl.conn(ctx)
	if err != nil {
		f.ch, f.sendErr = nil, err
		return
	}
	m := Msg{"topic": q.topic, "partition": q.partition, "acks": q.p.cfg.Acks.wire(),
		"timeoutMs": 30_000, "batch": f.batch}
	_, ch, err := c.send(OpProduce, m, f.oneWay)
	f.ch, f.sendErr = ch, err
}

func retriable(err error) bool {
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Code.Retriable()
	}
	return errors.Is(err, ErrConnectionLost)
}

// completeLoop waits for the answers of the batches in flight, in order, and retries the ones
// whose outcome is unknown.
func (q *partQueue) completeLoop() {
	defer q.p.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		q.mu.Lock()
		for len(q.inflight) == 0 && !(q.closing && !q.queued()) {
			q.cond.Wait()
		}
		if len(q.inflight) == 0 {
			q.mu.Unlock()
			return
		}
		f := q.inflight[0]
		q.mu.Unlock()
		var res result
		if f.sendErr != nil {
			res.err = f.sendErr
		} else if f.ch != nil {
			res = <-f.ch
		}
		if res.err != nil && retriable(res.err) && !q.p.cfg.NotIdempotent &&
			time.Since(f.first) < q.p.cfg.DeliveryTimeout {
			// Send this batch and every later one again, in order: the broker stores each once.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), q.p.cfg.DeliveryTimeout-time.Since(f.first))
			q.mu.Lock()
			for _, g := range q.inflight {
				q.transmit(ctx, g)
			}
			q.mu.Unlock()
			cancel()
			continue
		}
		backoff = 50 * time.Millisecond
		q.mu.Lock()
		q.inflight = q.inflight[1:]
		q.answering = true
		q.cond.Broadcast()
		q.mu.Unlock()
		if res.err != nil {
			fail(f.dones, res.err)
			if !q.p.cfg.NotIdempotent && refusedBeforeSequence(res.err) {
				q.closeGap(len(f.dones))
			}
		} else {
			q.complete(f, res)
		}
		q.mu.Lock()
		q.answering = false
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// refusedBeforeSequence reports whether the broker refused a batch before looking at its
// sequence, so the batch was not stored and left a gap in the producer's sequence.
func refusedBeforeSequence(err error) bool {
	var ge *Error
	if !errors.As(err, &ge) {
		return false
	}
	switch ge.Code {
	case CodeMalformedRequest, CodeInvalidRequest, CodeUnknownTopic, CodeInvalidTopic,
		CodeUnknownPartition, CodeCorruptBatch, CodeBatchTooLarge, CodeUnsupportedCodec:
		return true
	}
	return false
}

func answer(f *inflight) result {
	if f.sendErr != nil {
		return result{err: f.sendErr}
	}
	if f.ch == nil {
		return result{}
	}
	return <-f.ch
}

// closeGap recovers from a batch of n records the broker refused before taking its sequence:
// every later batch in flight would fail OUT_OF_ORDER_SEQUENCE. Sending stops, every answer in
// flight is awaited, and the batches that were not stored move down to close the gaps and are
// sent again, in order.
func (q *partQueue) closeGap(n int) {
	q.mu.Lock()
	q.recovering = true
	rest := q.inflight
	q.inflight = nil
	q.mu.Unlock()
	shift := n
	var kept []*inflight
	for _, g := range rest {
		res := answer(g)
		switch {
		case res.err == nil:
			q.complete(g, res)
		case refusedBeforeSequence(res.err):
			fail(g.dones, res.err)
			shift += len(g.dones)
		case retriable(res.err) && time.Since(g.first) < q.p.cfg.DeliveryTimeout:
			h, err := ReadBatchHeader(g.batch)
			if err != nil {
				fail(g.dones, err)
				continue
			}
			binary.BigEndian.PutUint32(g.batch[53:], uint32(addSequence(h.BaseSequence, -shift)))
			binary.BigEndian.PutUint32(g.batch[offCRC:], CRC32C(g.batch[offAttributes:]))
			kept = append(kept, g)
		default:
			fail(g.dones, res.err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), q.p.cfg.DeliveryTimeout)
	defer cancel()
	q.mu.Lock()
	q.sequence = addSequence(q.sequence, -shift)
	for _, g := range kept {
		q.transmit(ctx, g)
	}
	q.inflight = kept
	q.recovering = false
	q.cond.Broadcast()
	q.mu.Unlock()
}

// complete hands a stored batch's offsets to its messages' callbacks.
func (q *partQueue) complete(f *inflight, res result) {
	base := int64(-1)
	if !f.oneWay {
		m, err := DecodePayload(OpSchemas["PRODUCE"][1], res.payload)
		if err != nil {
			fail(f.dones, err)
			return
		}
		base = m["baseOffset"].(int64)
	}
	for i, done := range f.dones {
		off := base
		if base >= 0 {
			off = base + int64(i)
		}
		done(Result{Topic: q.topic, Partition: q.partition, Offset: off}, nil)
	}
	if q.p.cfg.Codec == CodecNone {
		// Uncompressed, the batch is the buffer its records were encoded into: stored, it is
		// referenced nowhere else, and a later batch is encoded into it.
		body := f.batch
		f.batch = nil
		q.p.bodies.Put(&body)
	}
}

// Flush sends the batches still lingering at once and waits until every message queued so far has
// its answer.
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	qs := make([]*partQueue, 0, len(p.parts))
	for _, q := range p.parts {
		qs = append(qs, q)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, q := range qs {
		wg.Go(func() {
			q.mu.Lock()
			q.flushes++
			q.cond.Broadcast()
			for q.queued() || len(q.inflight) > 0 || q.recovering || q.answering {
				q.cond.Wait()
			}
			q.flushes--
			q.mu.Unlock()
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close sends what is queued, waits for the answers and stops the producer.
func (p *Producer) Close(ctx context.Context) error {
	err := p.Flush(ctx)
	p.mu.Lock()
	p.closed = true
	qs := p.parts
	p.mu.Unlock()
	for _, q := range qs {
		q.mu.Lock()
		q.closing = true
		q.cond.Broadcast()
		q.mu.Unlock()
	}
	p.wg.Wait()
	p.cl.mu.Lock()
	delete(p.cl.prods, p)
	p.cl.mu.Unlock()
	return err
}

// Publish sends one message with a default producer of the client and waits until it is stored.
func (cl *Client) Publish(ctx context.Context, topic string, m Message) (Result, error) {
	cl.mu.Lock()
	if cl.defaultProducer == nil {
		cl.mu.Unlock()
		p := cl.NewProducer(ProducerConfig{})
		cl.mu.Lock()
		if cl.defaultProducer == nil {
			cl.defaultProducer = p
		}
	}
	p := cl.defaultProducer
	cl.mu.Unlock()
	return p.Send(ctx, topic, m)
}
