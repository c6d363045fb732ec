package gregormq_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	gregormq "gregormq.dev/sdk/go"
)

// Consumer groups against a live broker: auto-commit and the rebalance callbacks, committing by
// hand inside OnRevoked, and a static member fenced by its replacement.

// groupTestTimeout bounds each test of this file.
const groupTestTimeout = 30 * time.Second

func dialT(ctx context.Context, t *testing.T, b *broker) *gregormq.Client {
	t.Helper()
	c, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{b.addr}, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// publishTo publishes n messages "p<partition>-<i>" to each of the topic's partitions.
func publishTo(ctx context.Context, t *testing.T, c *gregormq.Client, topic string, partitions, n int) {
	t.Helper()
	for p := 0; p < partitions; p++ {
		for i := 0; i < n; i++ {
			m := gregormq.Message{Value: []byte(fmt.Sprintf("p%d-%d", p, i)), Partition: gregormq.PartitionOf(p)}
			if _, err := c.Publish(ctx, topic, m); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// waitFor polls cond every 20 ms until it holds or the ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within the test's time", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// callbacks records what OnAssigned and OnRevoked were told, in order.
type callbacks struct {
	mu     sync.Mutex
	events []string
}

func (cb *callbacks) config(cfg gregormq.GroupConfig) gregormq.GroupConfig {
	cfg.OnAssigned = func(_ context.Context, tps []gregormq.TopicPartition) { cb.add("+", tps) }
	cfg.OnRevoked = func(_ context.Context, tps []gregormq.TopicPartition) { cb.add("-", tps) }
	return cfg
}

func (cb *callbacks) add(sign string, tps []gregormq.TopicPartition) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	for _, tp := range tps {
		cb.events = append(cb.events, fmt.Sprintf("%s%d", sign, tp.Partition))
	}
}

func (cb *callbacks) get() []string {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return append([]string(nil), cb.events...)
}

// consumeAll reads from every member concurrently until want messages arrived in total, and
// returns who received each value.
func consumeAll(ctx context.Context, t *testing.T, want int, members ...*gregormq.GroupConsumer) map[string]int {
	t.Helper()
	type got struct {
		member int
		m      *gregormq.ReceivedMessage
	}
	ch := make(chan got)
	readCtx, stop := context.WithCancel(ctx)
	// The readers are gone when this returns, so none takes a message published later.
	var readers sync.WaitGroup
	defer readers.Wait()
	defer stop()
	for i, g := range members {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				m, err := g.Next(readCtx)
				if err != nil {
					return
				}
				select {
				case ch <- got{i, m}:
				case <-readCtx.Done():
					return
				}
			}
		}()
	}
	by := map[string]int{}
	for len(by) < want {
		select {
		case r := <-ch:
			v := string(r.m.Value)
			if prev, dup := by[v]; dup {
				t.Fatalf("%s was consumed twice: by member %d and by member %d", v, prev, r.member)
			}
			by[v] = r.member
		case <-ctx.Done():
			t.Fatalf("received %d of %d messages", len(by), want)
		}
	}
	return by
}

func TestGroupAutoCommitAndRebalanceCallbacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTestTimeout)
	defer cancel()
	b := startBroker(t)
	admin := dialT(ctx, t, b)
	const topic, group, partitions = "g-auto", "g-auto-members", 4
	if err := admin.CreateTopic(ctx, topic, partitions, nil); err != nil {
		t.Fatal(err)
	}
	var cbA, cbB callbacks
	cfg := gregormq.GroupConfig{Reset: gregormq.ResetEarliest, AutoCommitInterval: 100 * time.Millisecond}
	a, err := dialT(ctx, t, b).JoinGroup(ctx, group, []string{topic}, cbA.config(cfg))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "a owns every partition", func() bool { return len(a.Assignment()) == partitions })
	bm, err := dialT(ctx, t, b).JoinGroup(ctx, group, []string{topic}, cbB.config(cfg))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "a and b own two each", func() bool {
		return len(a.Assignment()) == 2 && len(bm.Assignment()) == 2
	})
	if got := cbA.get(); len(got) != 6 || got[0] != "+0" || got[3] != "+3" {
		t.Fatalf("a's callbacks: %v, want its four partitions assigned then two revoked", got)
	}
	if a.MemberID() == "" || a.MemberID() == bm.MemberID() || bm.Generation() < a.Generation()-1 {
		t.Fatalf("member ids %q and %q, generations %d and %d", a.MemberID(), bm.MemberID(),
			a.Generation(), bm.Generation())
	}

	publishTo(ctx, t, admin, topic, partitions, 5)
	by := consumeAll(ctx, t, partitions*5, a, bm)
	for v, member := range by {
		var p, i int
		fmt.Sscanf(v, "p%d-%d", &p, &i)
		owner := []*gregormq.GroupConsumer{a, bm}[member]
		if !containsPartition(owner.Assignment(), p) {
			t.Fatalf("%s was consumed by member %d, which does not own partition %d", v, member, p)
		}
	}
	// Auto-commit stores every processed message: all but the last each member was handed, which
	// counts as processed once it asks for the next.
	committed := func(want int64) bool {
		offs, err := admin.CommittedOffsets(ctx, group, nil)
		if err != nil || len(offs) != partitions {
			return false
		}
		var sum int64
		for _, o := range offs {
			if o.Offset < want-1 {
				return false
			}
			sum += o.Offset
		}
		return sum >= int64(partitions)*want-2
	}
	waitFor(ctx, t, "auto-commit reaches all but the last message of each member", func() bool {
		return committed(5)
	})

	// b leaves: a takes b's partitions and is told so.
	bOwned := bm.Assignment()
	if err := bm.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "a owns every partition again", func() bool { return len(a.Assignment()) == partitions })
	got := cbA.get()[6:]
	if len(got) != 2 || got[0] != fmt.Sprintf("+%d", bOwned[0].Partition) ||
		got[1] != fmt.Sprintf("+%d", bOwned[1].Partition) {
		t.Fatalf("a's callbacks after b left: %v, want b's %v assigned", got, bOwned)
	}
	desc, err := admin.DescribeGroup(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Members) != 1 || desc.Members[0].MemberID != a.MemberID() || len(desc.Members[0].Assigned) != partitions {
		t.Fatalf("described %+v, want a alone owning every partition", desc)
	}
	// Nothing is read twice: b committed what it consumed on Close.
	publishTo(ctx, t, admin, topic, partitions, 1)
	for p := 0; p < partitions; p++ {
		m, err := a.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Offset != 5 {
			t.Fatalf("after b left, a read %s/%d@%d, want offset 5 (the first not committed)", m.Topic,
				m.Partition, m.Offset)
		}
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	offs, err := admin.CommittedOffsets(ctx, group, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range offs {
		if o.Offset != 6 || o.HighWatermark != 6 {
			t.Fatalf("after Close the group's offsets are %+v, want 6 (the end) everywhere", offs)
		}
	}
	// An empty group's offsets may move back; a dry run only says where.
	for _, dry := range []bool{true, false} {
		set, err := admin.ResetOffsets(ctx, group, topic, []int{1}, gregormq.FromOffset(2), dry)
		if err != nil || len(set) != 1 || set[0].Partition != 1 || set[0].Offset != 2 {
			t.Fatalf("ResetOffsets(dryRun %v): %+v, %v", dry, set, err)
		}
		offs, err := admin.CommittedOffsets(ctx, group, []gregormq.TopicPartition{{Topic: topic, Partition: 1}})
		if want := map[bool]int64{true: 6, false: 2}[dry]; err != nil || len(offs) != 1 || offs[0].Offset != want {
			t.Fatalf("after ResetOffsets(dryRun %v): %+v, %v, want offset %d", dry, offs, err, want)
		}
	}
	if _, err := a.Next(ctx); !errors.Is(err, gregormq.ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
	groups, err := admin.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Group != group || groups[0].State != "empty" || groups[0].Members != 0 {
		t.Fatalf("groups after both left: %+v", groups)
	}
}

func containsPartition(tps []gregormq.TopicPartition, p int) bool {
	for _, tp := range tps {
		if tp.Partition == p {
			return true
		}
	}
	return false
}

func TestGroupManualCommitInOnRevoked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTestTimeout)
	defer cancel()
	b := startBroker(t)
	admin := dialT(ctx, t, b)
	const topic, group = "g-manual", "g-manual-members"
	if err := admin.CreateTopic(ctx, topic, 2, nil); err != nil {
		t.Fatal(err)
	}
	publishTo(ctx, t, admin, topic, 2, 3)
	var a *gregormq.GroupConsumer
	var revokeErr error
	revoked := make(chan struct{}, 1)
	cfg := gregormq.GroupConfig{Reset: gregormq.ResetEarliest, ManualCommit: true,
		OnRevoked: func(ctx context.Context, _ []gregormq.TopicPartition) {
			revokeErr = a.Commit(ctx)
			revoked <- struct{}{}
		}}
	a, err := dialT(ctx, t, b).JoinGroup(ctx, group, []string{topic}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	consumeAll(ctx, t, 6, a)
	// Without a commit, nothing is committed: ManualCommit turns auto-commit off.
	time.Sleep(300 * time.Millisecond)
	if offs, err := admin.CommittedOffsets(ctx, group, nil); err != nil || len(offs) != 0 {
		t.Fatalf("committed before any Commit: %+v, %v", offs, err)
	}
	// A second member takes one partition: a commits inside OnRevoked, which is what b starts from.
	second, err := dialT(ctx, t, b).JoinGroup(ctx, group, []string{topic},
		gregormq.GroupConfig{Reset: gregormq.ResetEarliest, ManualCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-revoked:
	case <-ctx.Done():
		t.Fatal("OnRevoked was not called")
	}
	if revokeErr != nil {
		t.Fatalf("Commit inside OnRevoked: %v", revokeErr)
	}
	waitFor(ctx, t, "one partition each", func() bool { return len(second.Assignment()) == 1 })
	moved := second.Assignment()[0]
	err = a.CommitOffsets(ctx, []gregormq.PartitionOffset{{Topic: topic, Partition: moved.Partition, Offset: 3}})
	if !errors.Is(err, gregormq.ErrStaleGeneration) {
		t.Fatalf("committing a partition that moved: %v, want ErrStaleGeneration", err)
	}
	publishTo(ctx, t, admin, topic, 2, 4)
	m, err := second.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Partition != moved.Partition || m.Offset != 3 {
		t.Fatalf("the new owner read %d@%d, want %d@3 (after a's commit in OnRevoked)", m.Partition,
			m.Offset, moved.Partition)
	}
}

func TestGroupStaticMemberIsFencedByItsReplacement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), groupTestTimeout)
	defer cancel()
	b := startBroker(t)
	admin := dialT(ctx, t, b)
	const topic, group = "g-static", "g-static-members"
	if err := admin.CreateTopic(ctx, topic, 2, nil); err != nil {
		t.Fatal(err)
	}
	cfg := gregormq.GroupConfig{InstanceID: "worker-1"}
	old, err := dialT(ctx, t, b).JoinGroup(ctx, group, []string{topic}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the old process owns both partitions", func() bool { return len(old.Assignment()) == 2 })
	if _, err := admin.ResetOffsets(ctx, group, topic, nil, gregormq.FromEarliest, false); !errors.Is(err, gregormq.ErrGroupNotEmpty) {
		t.Fatalf("ResetOffsets with a live member: %v, want ErrGroupNotEmpty", err)
	}
	replacement, err := dialT(ctx, t, b).JoinGroup(ctx, group, []string{topic}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the replacement owns both partitions", func() bool { return len(replacement.Assignment()) == 2 })
	if _, err := old.Next(ctx); !errors.Is(err, gregormq.ErrFencedInstance) {
		t.Fatalf("the replaced process's Next: %v, want ErrFencedInstance", err)
	}
	if n := len(old.Assignment()); n != 0 {
		t.Fatalf("the fenced process still owns %d partitions", n)
	}
	// A static member does not leave on Close: its partitions wait for it.
	if err := replacement.Close(ctx); err != nil {
		t.Fatal(err)
	}
	desc, err := admin.DescribeGroup(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Members) != 1 || desc.Members[0].InstanceID != "worker-1" {
		t.Fatalf("after the static member closed: %+v, want it still a member", desc)
	}
}
