package gregormq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// The consumer-group member (docs/protocol.md §8.9): it heartbeats to the broker's coordinator,
// consumes the partitions it is assigned (one subscription each, merged into one stream) and
// hands back the ones it is told to give up after committing them, so a rebalance stops only the
// partitions that move. A committed offset is the next one to process (Kafka's convention).

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int
}

// PartitionOffset is an offset of one partition: for a commit, the next offset to process.
type PartitionOffset struct {
	Topic     string
	Partition int
	Offset    int64
}

// Reset is where a group member starts a partition the group has no committed offset for (or
// whose committed offset fell to retention).
type Reset int

const (
	// ResetLatest starts at the high watermark: only messages published from then on (the
	// default, as Kafka's).
	ResetLatest Reset = iota
	// ResetEarliest starts at the partition's log start.
	ResetEarliest
)

// GroupConfig configures a consumer-group member; the zero value is a dynamic member of a sticky
// group with a 10 s session, auto-commit every second and ResetLatest.
type GroupConfig struct {
	// InstanceID makes the member static: a restart with the same id within the session timeout
	// gets the same partitions and moves nothing else. A static member does not leave on Close.
	InstanceID string
	// Assignor is how the group spreads partitions: "sticky" (the default), "range" or
	// "roundrobin". The group's first member decides.
	Assignor string
	// SessionTimeout: the broker removes the member when it hears nothing from it for this long
	// (1 s to 5 min); default 10 s.
	SessionTimeout time.Duration
	// ManualCommit turns auto-commit off: offsets are committed only by Commit and CommitOffsets.
	// With auto-commit, processed offsets are committed every AutoCommitInterval (default 1 s),
	// when a partition is taken away, and on Close.
	ManualCommit       bool
	AutoCommitInterval time.Duration
	Reset              Reset
	// WindowMessages and WindowBytes are each partition's credit (defaults 500 and 1 MiB);
	// BufferMessages bounds the messages of all partitions waiting for Next (default 10 000).
	WindowMessages int
	WindowBytes    int
	BufferMessages int
	// OnAssigned is called when partitions are added to the member, before their messages
	// arrive. OnRevoked is called when partitions are taken away, after their last message was
	// handed out and before they are committed (with auto-commit) and released: commit there when
	// committing by hand, passing the ctx it is given. Both run on the member's heartbeat
	// goroutine, so the group waits for them; they must not call Close.
	OnAssigned func(ctx context.Context, partitions []TopicPartition)
	OnRevoked  func(ctx context.Context, partitions []TopicPartition)
}

// Backoff between failed heartbeats.
const (
	groupRetryMin = 50 * time.Millisecond
	groupRetryMax = time.Second
)

// inRebalance marks the ctx a rebalance callback gets: a commit made with it does not wait for
// the heartbeat that is calling it.
type inRebalance struct{}

// owned is one partition the member consumes.
type owned struct {
	tp     TopicPartition
	sub    *Subscription
	cancel context.CancelFunc // stops the pump
	ctx    context.Context
	// position is the next offset to process (what a commit stores); committed the last commit.
	position  int64
	committed int64
	stopped   bool
}

type groupMsg struct {
	o *owned
	m *ReceivedMessage
}

// GroupConsumer is one member of a consumer group; make one with Client.JoinGroup. Next is meant
// for one goroutine; the other methods may be called from any.
type GroupConsumer struct {
	cl     *Client
	group  string
	topics []string
	cfg    GroupConfig

	msgs   chan groupMsg
	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	loops  sync.WaitGroup
	beatMu sync.Mutex // one heartbeat at a time: membership changes happen under it

	mu         sync.Mutex
	memberID   string
	generation int64
	owned      map[TopicPartition]*owned
	last       *groupMsg // handed out by Next, processed once Next is called again
	lastBeatOK time.Time
	failure    error
	failed     chan struct{}
	closed     bool
}

// JoinGroup joins a consumer group as a new member subscribed to topics and returns once the
// coordinator answered the first heartbeat. The group's members share the topics' partitions,
// each partition consumed by one member at a time. It fails with ErrInvalidRequest (a bad group
// name or config) or ErrLimitExceeded.
func (cl *Client) JoinGroup(ctx context.Context, group string, topics []string, cfg GroupConfig) (*GroupConsumer, error) {
	if len(topics) == 0 {
		return nil, errors.New("gregormq: JoinGroup needs at least one topic")
	}
	if cfg.Assignor == "" {
		cfg.Assignor = "sticky"
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.AutoCommitInterval <= 0 {
		cfg.AutoCommitInterval = time.Second
	}
	if cfg.WindowMessages <= 0 {
		cfg.WindowMessages = 500
	}
	if cfg.WindowBytes <= 0 {
		cfg.WindowBytes = 1 << 20
	}
	if cfg.BufferMessages <= 0 {
		cfg.BufferMessages = 10_000
	}
	g := &GroupConsumer{cl: cl, group: group, topics: append([]string(nil), topics...), cfg: cfg,
		msgs: make(chan groupMsg, cfg.BufferMessages), generation: -1,
		owned: map[TopicPartition]*owned{}, lastBeatOK: time.Now(), failed: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	if _, err := g.beat(ctx); err != nil {
		g.cancel()
		g.dropAll()
		return nil, err
	}
	g.loops.Add(1)
	go g.heartbeatLoop()
	if !cfg.ManualCommit {
		g.loops.Add(1)
		go g.autoCommitLoop()
	}
	cl.mu.Lock()
	cl.groups[g] = struct{}{}
	cl.mu.Unlock()
	return g, nil
}

// Group is the group's name.
func (g *GroupConsumer) Group() string { return g.group }

// MemberID is the id the coordinator gave this member ("" while it is out of the group).
func (g *GroupConsumer) MemberID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.memberID
}

// Generation is the group generation this member last heard.
func (g *GroupConsumer) Generation() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.generation
}

// Assignment is the partitions this member consumes now, sorted.
func (g *GroupConsumer) Assignment() []TopicPartition {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.assignmentLocked()
}

func (g *GroupConsumer) assignmentLocked() []TopicPartition {
	out := make([]TopicPartition, 0, len(g.owned))
	for tp := range g.owned {
		out = append(out, tp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// Next waits for the next message of any assigned partition. Calling it again marks the message
// it returned before processed (what Commit and auto-commit commit). Messages of one partition
// come in offset order. It returns ErrClosed after Close, and ErrFencedInstance once a newer
// process with the same InstanceID took this member's place.
func (g *GroupConsumer) Next(ctx context.Context) (*ReceivedMessage, error) {
	g.mu.Lock()
	g.markProcessedLocked()
	g.mu.Unlock()
	for {
		if g.ctx.Err() != nil {
			return nil, ErrClosed
		}
		select {
		case gm := <-g.msgs:
			g.mu.Lock()
			if gm.o.stopped { // taken away while it waited in the buffer
				g.mu.Unlock()
				continue
			}
			g.last = &gm
			g.mu.Unlock()
			return gm.m, nil
		case <-g.failed:
			return nil, g.failure
		case <-g.ctx.Done():
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (g *GroupConsumer) markProcessedLocked() {
	if g.last == nil {
		return
	}
	if o := g.last.o; !o.stopped && g.last.m.Offset+1 > o.position {
		o.position = g.last.m.Offset + 1
	}
	g.last = nil
}

// pump moves one partition's messages into the shared buffer until the partition is stopped.
func (g *GroupConsumer) pump(o *owned) {
	for {
		m, err := o.sub.Next(o.ctx)
		if err != nil {
			if o.ctx.Err() == nil && !errors.Is(err, ErrClosed) {
				g.fail(fmt.Errorf("gregormq: group %s lost partition %s/%d: %w", g.group, o.tp.Topic,
					o.tp.Partition, err))
			}
			return
		}
		select {
		case g.msgs <- groupMsg{o: o, m: m}:
		case <-o.ctx.Done():
			return
		}
	}
}

func (g *GroupConsumer) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failure == nil {
		g.failure = err
		close(g.failed)
	}
}

func (g *GroupConsumer) heartbeatLoop() {
	defer g.loops.Done()
	retry := groupRetryMin
	for {
		wait, err := g.beat(g.ctx)
		if g.ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, ErrFencedInstance) {
				g.dropAll()
				g.fail(err)
				return
			}
			var ge *Error
			if !errors.As(err, &ge) && !errors.Is(err, ErrConnectionLost) &&
				!errors.Is(err, context.DeadlineExceeded) {
				g.fail(err)
				return
			}
			// Out of touch for a whole session: the coordinator has given the partitions away.
			g.mu.Lock()
			expired := time.Since(g.lastBeatOK) > g.cfg.SessionTimeout
			g.mu.Unlock()
			if expired {
				g.dropAll()
				g.mu.Lock()
				g.memberID, g.generation = "", -1
				g.mu.Unlock()
			}
			wait = retry
			retry = min(groupRetryMax, retry*2)
		} else {
			retry = groupRetryMin
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-g.ctx.Done():
			t.Stop()
			return
		}
	}
}

// beat sends one heartbeat (after any under way) and applies its answer; it returns when to send
// the next.
func (g *GroupConsumer) beat(ctx context.Context) (time.Duration, error) {
	g.beatMu.Lock()
	defer g.beatMu.Unlock()
	ctx, cancel := g.cl.withTimeout(ctx)
	defer cancel()
	topics := make([]Msg, len(g.topics))
	for i, t := range g.topics {
		topics[i] = Msg{"name": t}
	}
	g.mu.Lock()
	req := Msg{"group": g.group, "memberId": g.memberID, "instanceId": g.cfg.InstanceID,
		"generation": g.generation, "sessionTimeoutMs": g.cfg.SessionTimeout.Milliseconds(),
		"assignor": g.cfg.Assignor, "topics": topics, "owned": partitionList(g.assignmentLocked())}
	g.mu.Unlock()
	// Not Client.call: a join sent twice would make two members.
	c, err := g.cl.conn(ctx)
	if err != nil {
		return 0, err
	}
	resp, err := c.request(ctx, OpGroupHeartbeat, req)
	if errors.Is(err, ErrUnknownMember) {
		// The session ended: the partitions may be someone else's now. Drop them uncommitted and
		// join again at once.
		g.dropAll()
		g.mu.Lock()
		g.memberID, g.generation = "", -1
		g.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	assigned := map[TopicPartition]bool{}
	for _, p := range resp["assigned"].([]Msg) {
		assigned[TopicPartition{Topic: p["topic"].(string), Partition: int(p["partition"].(int64))}] = true
	}
	g.mu.Lock()
	g.lastBeatOK = time.Now()
	g.memberID = resp["memberId"].(string)
	g.generation = resp["generation"].(int64)
	var revoked []*owned
	for tp, o := range g.owned {
		if !assigned[tp] {
			revoked = append(revoked, o)
		}
	}
	var added []TopicPartition
	for tp := range assigned {
		if g.owned[tp] == nil {
			added = append(added, tp)
		}
	}
	g.mu.Unlock()
	cbCtx := context.WithValue(ctx, inRebalance{}, true)
	if len(revoked) > 0 {
		g.revoke(cbCtx, revoked)
		return 0, nil // tell the coordinator at once that they are free
	}
	if len(added) > 0 {
		sort.Slice(added, func(i, j int) bool {
			return added[i].Topic < added[j].Topic ||
				added[i].Topic == added[j].Topic && added[i].Partition < added[j].Partition
		})
		if err := g.assign(cbCtx, added); err != nil {
			return 0, err
		}
	}
	return time.Duration(resp["heartbeatIntervalMs"].(int64)) * time.Millisecond, nil
}

func partitionList(tps []TopicPartition) []Msg {
	out := make([]Msg, len(tps))
	for i, tp := range tps {
		out[i] = Msg{"topic": tp.Topic, "partition": tp.Partition}
	}
	return out
}

// assign starts consuming newly assigned partitions at the group's committed offsets.
func (g *GroupConsumer) assign(ctx context.Context, tps []TopicPartition) error {
	resp, err := g.cl.call(ctx, OpOffsetFetch, Msg{"group": g.group, "partitions": partitionList(tps)})
	if err != nil {
		return err
	}
	committed := map[TopicPartition]int64{}
	for _, o := range resp["offsets"].([]Msg) {
		committed[TopicPartition{Topic: o["topic"].(string), Partition: int(o["partition"].(int64))}] = o["offset"].(int64)
	}
	if g.cfg.OnAssigned != nil {
		g.cfg.OnAssigned(ctx, append([]TopicPartition(nil), tps...))
	}
	reset := FromLatest
	if g.cfg.Reset == ResetEarliest {
		reset = FromEarliest
	}
	for _, tp := range tps {
		from := reset
		c, ok := committed[tp]
		if !ok {
			c = -1
		}
		if c >= 0 {
			from = FromOffset(c)
		}
		cfg := SubscribeConfig{Partition: tp.Partition, From: from, NoAcks: true,
			WindowMessages: g.cfg.WindowMessages, WindowBytes: g.cfg.WindowBytes}
		sub, err := g.cl.Subscribe(ctx, tp.Topic, cfg)
		if errors.Is(err, ErrOffsetOutOfRange) {
			// The committed offset fell to retention: start where the reset policy says.
			cfg.From = reset
			sub, err = g.cl.Subscribe(ctx, tp.Topic, cfg)
		}
		if err != nil {
			return fmt.Errorf("gregormq: group %s cannot consume its partition %s/%d: %w", g.group,
				tp.Topic, tp.Partition, err)
		}
		o := &owned{tp: tp, sub: sub, position: sub.StartOffset, committed: c}
		o.ctx, o.cancel = context.WithCancel(g.ctx)
		g.mu.Lock()
		g.owned[tp] = o
		g.mu.Unlock()
		go g.pump(o)
	}
	return nil
}

// revoke gives partitions back: stop, tell OnRevoked, commit (with auto-commit), release.
func (g *GroupConsumer) revoke(ctx context.Context, list []*owned) {
	g.mu.Lock()
	for _, o := range list {
		// The message in the application's hands counts as processed only once it asks for the
		// next, which it can no longer do for this partition.
		if g.last != nil && g.last.o == o {
			g.last = nil
		}
		o.stopped = true
		o.cancel()
	}
	g.mu.Unlock()
	if g.cfg.OnRevoked != nil {
		tps := make([]TopicPartition, len(list))
		for i, o := range list {
			tps[i] = o.tp
		}
		g.cfg.OnRevoked(ctx, tps)
	}
	if !g.cfg.ManualCommit {
		_ = g.commitOwned(ctx, list)
	}
	g.release(list)
}

// release forgets partitions and ends their subscriptions.
func (g *GroupConsumer) release(list []*owned) {
	g.mu.Lock()
	for _, o := range list {
		o.stopped = true
		o.cancel()
		if g.owned[o.tp] == o {
			delete(g.owned, o.tp)
		}
	}
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), g.cl.cfg.RequestTimeout)
	defer cancel()
	for _, o := range list {
		_ = o.sub.Close(ctx)
	}
}

// dropAll forgets every partition without committing (the session was lost, or Close).
func (g *GroupConsumer) dropAll() {
	g.mu.Lock()
	list := make([]*owned, 0, len(g.owned))
	for _, o := range g.owned {
		list = append(list, o)
	}
	g.last = nil
	g.mu.Unlock()
	g.release(list)
}

// Commit commits every owned partition up to and including the last message Next returned, and
// returns once the offsets are durable (Kafka's commitSync). It fails with ErrStaleGeneration
// when one of them was taken away meanwhile.
func (g *GroupConsumer) Commit(ctx context.Context) error {
	g.mu.Lock()
	g.markProcessedLocked()
	list := make([]*owned, 0, len(g.owned))
	for _, o := range g.owned {
		list = append(list, o)
	}
	g.mu.Unlock()
	return g.commitOwned(ctx, list)
}

// CommitOffsets commits exactly these offsets (each the next offset to process) and returns once
// they are durable. It fails with ErrStaleGeneration if this member does not own one of the
// partitions (it moved in a rebalance), ErrInvalidOffset for an offset below the group's
// committed one or past the partition's end, and ErrUnknownMember after the session was lost.
func (g *GroupConsumer) CommitOffsets(ctx context.Context, offsets []PartitionOffset) error {
	if len(offsets) == 0 {
		return nil
	}
	if err := g.sendCommit(ctx, offsets); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, po := range offsets {
		if o := g.owned[TopicPartition{po.Topic, po.Partition}]; o != nil {
			o.committed = max(o.committed, po.Offset)
		}
	}
	return nil
}

func (g *GroupConsumer) commitOwned(ctx context.Context, list []*owned) error {
	g.mu.Lock()
	var due []PartitionOffset
	for _, o := range list {
		if o.position >= 0 && o.position > o.committed {
			due = append(due, PartitionOffset{o.tp.Topic, o.tp.Partition, o.position})
		}
	}
	g.mu.Unlock()
	return g.CommitOffsets(ctx, due)
}

func (g *GroupConsumer) sendCommit(ctx context.Context, offsets []PartitionOffset) error {
	ctx, cancel := g.cl.withTimeout(ctx)
	defer cancel()
	list := make([]Msg, len(offsets))
	for i, o := range offsets {
		list[i] = Msg{"topic": o.Topic, "partition": o.Partition, "offset": o.Offset}
	}
	send := func() error {
		g.mu.Lock()
		req := Msg{"group": g.group, "memberId": g.memberID, "generation": g.generation, "offsets": list}
		g.mu.Unlock()
		_, err := g.cl.call(ctx, OpOffsetCommit, req)
		return err
	}
	err := send()
	if !errors.Is(err, ErrStaleGeneration) || ctx.Value(inRebalance{}) != nil {
		return err
	}
	// The broker told this member of a newer generation than the one sent: learn it, then
	// commit again if every partition is still ours. One that moved is the caller's to hear
	// about: dropping it quietly would report offsets committed that never were.
	if _, err := g.beat(ctx); err != nil {
		return err
	}
	g.mu.Lock()
	var moved []string
	for _, o := range offsets {
		if g.owned[TopicPartition{o.Topic, o.Partition}] == nil {
			moved = append(moved, fmt.Sprintf("%s/%d", o.Topic, o.Partition))
		}
	}
	gen := g.generation
	g.mu.Unlock()
	if len(moved) > 0 {
		return &Error{Code: CodeStaleGeneration, Message: fmt.Sprintf(
			"cannot commit %s for group %s: this member no longer owns it (generation %d)",
			strings.Join(moved, ", "), g.group, gen)}
	}
	return send()
}

func (g *GroupConsumer) autoCommitLoop() {
	defer g.loops.Done()
	t := time.NewTicker(g.cfg.AutoCommitInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
			g.mu.Lock()
			list := make([]*owned, 0, len(g.owned))
			for _, o := range g.owned {
				list = append(list, o)
			}
			g.mu.Unlock()
			// A failure (a stale generation, a lost connection) is retried on the next tick.
			_ = g.commitOwned(g.ctx, list)
		}
	}
}

// Close commits (with auto-commit), leaves the group so its partitions move at once, and ends
// every subscription. A static member does not leave: its partitions wait for it until the
// session times out.
func (g *GroupConsumer) Close(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	var err error
	if !g.cfg.ManualCommit {
		err = g.Commit(ctx)
	}
	g.cancel()
	g.loops.Wait()
	g.beatMu.Lock() // a heartbeat under way finishes first
	g.dropAll()
	g.mu.Lock()
	id := g.memberID
	g.memberID = ""
	g.mu.Unlock()
	g.beatMu.Unlock()
	if id != "" && g.cfg.InstanceID == "" {
		if _, lerr := g.cl.call(ctx, OpGroupLeave, Msg{"group": g.group, "memberId": id}); lerr != nil &&
			!errors.Is(lerr, ErrUnknownMember) && !errors.Is(lerr, ErrClosed) {
			err = errors.Join(err, lerr)
		}
	}
	g.cl.mu.Lock()
	delete(g.cl.groups, g)
	g.cl.mu.Unlock()
	return err
}
