package gregormq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	gregormq "gregormq.dev/sdk/go"
)

// The Go driver of the conformance suite: every scenario of conformance/scenarios.json, run with
// this SDK against live brokers, as tests/_conformance.ts runs it with the TypeScript client.

type step map[string]any

type scenario struct {
	Name    string
	Brokers int
	Cluster bool
	Steps   []step
}

// receiveTimeout is how long a receive step waits for each message.
const receiveTimeout = 10 * time.Second

// assignmentTimeout bounds an awaitAssignment step; assignmentPoll is how often it looks.
const (
	assignmentTimeout = 10 * time.Second
	assignmentPoll    = 20 * time.Millisecond
)

// clusterTimeout bounds an awaitCluster step, leadersTimeout an awaitLeaders step; settlePoll is
// how often they (and a createTopic with retryMs) ask again.
const (
	clusterTimeout = 30 * time.Second
	leadersTimeout = 10 * time.Second
	settlePoll     = 100 * time.Millisecond
)

func loadScenarios(t *testing.T) []scenario {
	raw, err := os.ReadFile("../../conformance/scenarios.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Scenarios []scenario }
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Scenarios) < 10 {
		t.Fatalf("scenarios.json has %d scenarios, want at least 10", len(doc.Scenarios))
	}
	return doc.Scenarios
}

func TestMurmur2Vectors(t *testing.T) {
	raw, err := os.ReadFile("../../conformance/murmur2.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Vectors []struct {
			Key        string
			Murmur2    int32
			Partitions map[string]int
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) < 10 {
		t.Fatalf("%d vectors", len(doc.Vectors))
	}
	for _, v := range doc.Vectors {
		if got := gregormq.Murmur2([]byte(v.Key)); got != v.Murmur2 {
			t.Errorf("Murmur2(%q) = %d, want %d", v.Key, got, v.Murmur2)
		}
		for n, want := range v.Partitions {
			var parts int
			fmt.Sscan(n, &parts)
			if got := gregormq.PartitionForKey([]byte(v.Key), parts); got != want {
				t.Errorf("PartitionForKey(%q, %d) = %d, want %d", v.Key, parts, got, want)
			}
		}
	}
}

func TestConformanceScenarios(t *testing.T) {
	scenarios := loadScenarios(t)
	shared := []*broker{startBroker(t)}
	for _, s := range scenarios {
		t.Run(s.Name, func(t *testing.T) {
			brokers := shared
			if s.Cluster {
				brokers = startCluster(t, s.Brokers)
			} else if s.Brokers > 1 {
				brokers = nil
				for i := 0; i < s.Brokers; i++ {
					brokers = append(brokers, startBroker(t))
				}
			}
			runScenario(t, s, brokers)
		})
	}
}

type driver struct {
	t       *testing.T
	brokers []*broker
	client  *gregormq.Client
	clients []*gregormq.Client
	subs    map[string]*gregormq.Subscription
	// subTopics and subPartitions are what each subscription reads.
	subTopics     map[string]string
	subPartitions map[string]int
	proxies       []*cuttingProxy
	// pending is a Next left waiting by expectNone, which the following receive takes over.
	pending map[string]chan nextResult
	// members are group members by step name, each on its own client, and memberPending their
	// Next calls left waiting by groupExpectNone.
	members       map[string]*gregormq.GroupConsumer
	memberPending map[string]chan nextResult
}

type nextResult struct {
	m   *gregormq.ReceivedMessage
	err error
}

func runScenario(t *testing.T, s scenario, brokers []*broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := &driver{t: t, brokers: brokers, subs: map[string]*gregormq.Subscription{},
		subTopics: map[string]string{}, subPartitions: map[string]int{},
		pending: map[string]chan nextResult{}, members: map[string]*gregormq.GroupConsumer{},
		memberPending: map[string]chan nextResult{}}
	defer func() {
		for _, c := range d.clients {
			_ = c.Close()
		}
	}()
	d.client = d.open(ctx, []string{brokers[0].addr})
	for i, st := range s.Steps {
		err := d.run(ctx, st)
		where := fmt.Sprintf("step %d (%s)", i, st["op"])
		if want, ok := st["expectError"].(string); ok {
			var ge *gregormq.Error
			if !errors.As(err, &ge) {
				t.Fatalf("%s: expected %s, got %v", where, want, err)
			}
			code, _ := gregormq.CodeByName(want)
			if ge.Code != code || !errors.Is(err, &gregormq.Error{Code: code}) {
				t.Fatalf("%s: expected %s, got %v", where, want, err)
			}
		} else if err != nil {
			t.Fatalf("%s failed: %v", where, err)
		}
	}
}

func (d *driver) open(ctx context.Context, servers []string) *gregormq.Client {
	c, err := gregormq.Dial(ctx, gregormq.Config{Servers: servers, RequestTimeout: 10 * time.Second})
	if err != nil {
		d.t.Fatalf("connect to %v: %v", servers, err)
	}
	d.clients = append(d.clients, c)
	return c
}

// partitionAwayFrom is the lowest partition of topic none of whose replicas is the node.
func (d *driver) partitionAwayFrom(ctx context.Context, topic, node string) (int, error) {
	desc, err := d.client.DescribeTopic(ctx, topic)
	if err != nil {
		return 0, err
	}
	for _, p := range desc.Partitions {
		if !slices.Contains(p.Replicas, node) {
			return p.Partition, nil
		}
	}
	return 0, fmt.Errorf("every partition of %s has a replica on %s", topic, node)
}

// leadersSettled: every partition names a leader, a different node each, has `replicas` replicas
// with the leader among them, and is not moving.
func leadersSettled(desc *gregormq.TopicDescription, replicas int) bool {
	seen := map[string]bool{}
	for _, p := range desc.Partitions {
		if p.Leader == "" || seen[p.Leader] || len(p.Replicas) != replicas ||
			!slices.Contains(p.Replicas, p.Leader) || p.Moving {
			return false
		}
		seen[p.Leader] = true
	}
	return true
}

func str(v any) string { s, _ := v.(string); return s }

func num(v any) int64 { n, _ := v.(float64); return int64(n) }

func optBytes(m step, k string) []byte {
	v, ok := m[k]
	if !ok || v == nil {
		return nil
	}
	return []byte(v.(string))
}

func refusedAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func (d *driver) next(ctx context.Context, name string) (*gregormq.ReceivedMessage, error) {
	ch := d.pending[name]
	delete(d.pending, name)
	if ch == nil {
		ch = d.startNext(ctx, name)
	}
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(receiveTimeout):
		return nil, fmt.Errorf("%s: nothing received in %v", name, receiveTimeout)
	}
}

func (d *driver) startNext(ctx context.Context, name string) chan nextResult {
	ch := make(chan nextResult, 1)
	sub := d.subs[name]
	go func() {
		m, err := sub.Next(ctx)
		ch <- nextResult{m, err}
	}()
	return ch
}

func (d *driver) run(ctx context.Context, st step) error {
	switch st["op"] {
	case "connect":
		var servers []string
		for _, x := range st["servers"].([]any) {
			if x == "refused" {
				servers = append(servers, refusedAddress())
			} else {
				servers = append(servers, d.brokers[num(x)].addr)
			}
		}
		if pc, ok := st["cuttingProxy"].(map[string]any); ok {
			p := startCuttingProxy(d.t, servers[0], int32(num(pc["cuts"])), num(pc["afterBytes"]))
			d.proxies = append(d.proxies, p)
			servers = []string{p.ln.Addr().String()}
		}
		d.client = d.open(ctx, servers)
	case "stopBroker":
		if _, ok := st["leaderOf"]; !ok {
			d.brokers[num(st["broker"])].stop()
			return nil
		}
		sub := str(st["leaderOf"])
		desc, err := d.client.DescribeTopic(ctx, d.subTopics[sub])
		if err != nil {
			return err
		}
		leader := desc.Partitions[d.subPartitions[sub]].Leader
		for _, b := range d.brokers {
			if b.nodeID == leader {
				b.stop()
				return nil
			}
		}
		return fmt.Errorf("the leader %q of %s/%d is no broker", leader, desc.Name, d.subPartitions[sub])
	case "createTopic":
		configs := map[string]string{}
		if c, ok := st["configs"].(map[string]any); ok {
			for k, v := range c {
				configs[k] = v.(string)
			}
		}
		deadline := time.Now().Add(time.Duration(num(st["retryMs"])) * time.Millisecond)
		for failed := false; ; failed = true {
			err := d.client.CreateTopic(ctx, str(st["topic"]), int(num(st["partitions"])), configs)
			var ge *gregormq.Error
			switch {
			case err == nil:
				return nil
			case failed && errors.Is(err, gregormq.ErrTopicExists):
				return nil // an attempt that failed (a TIMEOUT, say) created it
			case !errors.As(err, &ge) || !ge.Code.Retriable() || !time.Now().Before(deadline):
				return err
			}
			time.Sleep(settlePoll)
		}
	case "awaitCluster":
		deadline := time.Now().Add(clusterTimeout)
		for {
			nodes, controller, err := gregormq.ClusterNodes(ctx, d.client)
			if err == nil && int64(nodes) == num(st["nodes"]) && controller != "" {
				return nil
			}
			if !time.Now().Before(deadline) {
				return fmt.Errorf("the cluster did not form in %v: %d nodes, controller %q, %v",
					clusterTimeout, nodes, controller, err)
			}
			time.Sleep(settlePoll)
		}
	case "awaitLeaders":
		deadline := time.Now().Add(leadersTimeout)
		for {
			desc, err := d.client.DescribeTopic(ctx, str(st["topic"]))
			if err != nil {
				return err
			}
			if leadersSettled(desc, int(num(st["replicas"]))) {
				return nil
			}
			if !time.Now().Before(deadline) {
				return fmt.Errorf("%s's partitions did not each get a leader of their own in %v: %+v",
					desc.Name, leadersTimeout, desc.Partitions)
			}
			time.Sleep(settlePoll)
		}
	case "deleteTopic":
		return d.client.DeleteTopic(ctx, str(st["topic"]))
	case "listTopics":
		topics, err := d.client.ListTopics(ctx)
		if err != nil {
			return err
		}
		byName := map[string]gregormq.TopicSummary{}
		for _, tp := range topics {
			byName[tp.Name] = tp
		}
		for _, w := range anyList(st["expectIncludes"]) {
			want := w.(map[string]any)
			got, ok := byName[str(want["name"])]
			if !ok || int64(got.Partitions) != num(want["partitions"]) {
				return fmt.Errorf("topic %v: listed as %+v (found %v)", want, got, ok)
			}
		}
		for _, n := range anyList(st["expectExcludes"]) {
			if _, ok := byName[str(n)]; ok {
				return fmt.Errorf("%s is still listed", n)
			}
		}
	case "describeTopic":
		desc, err := d.client.DescribeTopic(ctx, str(st["topic"]))
		if err != nil {
			return err
		}
		if n, ok := st["expectPartitions"]; ok && int64(len(desc.Partitions)) != num(n) {
			return fmt.Errorf("%d partitions, want %v", len(desc.Partitions), n)
		}
		if hw, ok := st["expectHighWatermarks"]; ok {
			var got []int64
			for _, p := range desc.Partitions {
				got = append(got, p.HighWatermark)
			}
			var want []int64
			for _, x := range hw.([]any) {
				want = append(want, num(x))
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("high watermarks %v, want %v", got, want)
			}
		}
		if c, ok := st["expectConfigsInclude"].(map[string]any); ok {
			for k, v := range c {
				if desc.Configs[k] != v {
					return fmt.Errorf("config %s = %q, want %q", k, desc.Configs[k], v)
				}
			}
		}
	case "publish":
		return d.publish(ctx, st)
	case "publishMany":
		p := d.client.NewProducer(gregormq.ProducerConfig{BatchRecordsMax: int(num(st["batchRecordsMax"]))})
		errs := make(chan error, num(st["count"]))
		for n := int64(0); n < num(st["count"]); n++ {
			m := gregormq.Message{Value: []byte(fmt.Sprintf("%s%d", str(st["valuePrefix"]), n))}
			if err := p.SendAsync(ctx, str(st["topic"]), m, func(_ gregormq.Result, err error) { errs <- err }); err != nil {
				return err
			}
		}
		if err := p.Close(ctx); err != nil {
			return err
		}
		for n := int64(0); n < num(st["count"]); n++ {
			if err := <-errs; err != nil {
				return err
			}
		}
	case "expectProxyCuts":
		cut := int64(0)
		for _, p := range d.proxies {
			cut += int64(p.cut.Load())
		}
		if cut < num(st["atLeast"]) {
			return fmt.Errorf("the proxy cut %d connections, fewer than %v", cut, st["atLeast"])
		}
	case "publishEach":
		for n := int64(0); n < num(st["count"]); n++ {
			m := gregormq.Message{Value: []byte(fmt.Sprintf("%s%d", str(st["valuePrefix"]), n))}
			if _, err := d.client.Publish(ctx, str(st["topic"]), m); err != nil {
				return err
			}
		}
	case "subscribe":
		c := d.client
		if st["newClient"] == true {
			c = d.open(ctx, []string{d.brokers[0].addr})
		}
		cfg := gregormq.SubscribeConfig{Partition: int(num(st["partition"])), From: gregormq.FromLatest,
			Durable: str(st["durable"]), NoAcks: st["noAcks"] == true,
			AckTimeout:     time.Duration(num(st["ackTimeoutMs"])) * time.Millisecond,
			WindowMessages: int(num(st["windowMessages"]))}
		switch f := st["from"].(type) {
		case string:
			if f == "earliest" {
				cfg.From = gregormq.FromEarliest
			}
		case map[string]any:
			if o, ok := f["offset"]; ok {
				cfg.From = gregormq.FromOffset(num(o))
			} else {
				cfg.From = gregormq.FromTimestamp(time.UnixMilli(num(f["timestamp"])))
			}
		}
		if away, ok := st["awayFrom"]; ok {
			p, err := d.partitionAwayFrom(ctx, str(st["topic"]), d.brokers[num(away)].nodeID)
			if err != nil {
				return err
			}
			cfg.Partition = p
		}
		sub, err := c.Subscribe(ctx, str(st["topic"]), cfg)
		if err != nil {
			return err
		}
		d.subs[str(st["sub"])] = sub
		d.subTopics[str(st["sub"])], d.subPartitions[str(st["sub"])] = str(st["topic"]), cfg.Partition
		if want, ok := st["expectStartOffset"]; ok && sub.StartOffset != num(want) {
			return fmt.Errorf("start offset %d, want %v", sub.StartOffset, want)
		}
	case "receive":
		for _, w := range st["expect"].([]any) {
			want := w.(map[string]any)
			m, err := d.next(ctx, str(st["sub"]))
			if err != nil {
				return err
			}
			if m.Offset != num(want["offset"]) {
				return fmt.Errorf("offset %d, want %v", m.Offset, want["offset"])
			}
			if k, ok := want["key"]; ok && !reflect.DeepEqual(m.Key, optBytes(want, "key")) {
				return fmt.Errorf("offset %d: key %q, want %v", m.Offset, m.Key, k)
			}
			if v, ok := want["value"]; ok && string(m.Value) != v {
				return fmt.Errorf("offset %d: value %q, want %v", m.Offset, m.Value, v)
			}
			if ts, ok := want["timestamp"]; ok && m.Timestamp.UnixMilli() != num(ts) {
				return fmt.Errorf("offset %d: timestamp %d, want %v", m.Offset, m.Timestamp.UnixMilli(), ts)
			}
			if r, ok := want["redelivered"]; ok && m.Redelivered != r {
				return fmt.Errorf("offset %d: redelivered %v, want %v", m.Offset, m.Redelivered, r)
			}
		}
	case "receiveCount":
		for n := int64(0); n < num(st["count"]); n++ {
			m, err := d.next(ctx, str(st["sub"]))
			if err != nil {
				return err
			}
			if m.Offset != num(st["firstOffset"])+n {
				return fmt.Errorf("offset %d, want %d", m.Offset, num(st["firstOffset"])+n)
			}
			if prefix, ok := st["valuePrefix"].(string); ok && string(m.Value) != fmt.Sprintf("%s%d", prefix, n) {
				return fmt.Errorf("offset %d holds %q, want %s%d", m.Offset, m.Value, prefix, n)
			}
		}
	case "expectNone":
		name := str(st["sub"])
		ch := d.startNext(ctx, name)
		select {
		case r := <-ch:
			return fmt.Errorf("%s received %+v (%v) but expected nothing", name, r.m, r.err)
		case <-time.After(time.Duration(num(st["ms"])) * time.Millisecond):
			d.pending[name] = ch
		}
	case "ack":
		return d.subs[str(st["sub"])].Ack(num(st["offset"]))
	case "unsubscribe":
		name := str(st["sub"])
		err := d.subs[name].Close(ctx)
		delete(d.subs, name)
		return err
	case "joinGroup", "awaitAssignment", "groupReceive", "groupExpectNone", "groupCommit", "leaveGroup":
		return d.runGroup(ctx, st)
	default:
		return fmt.Errorf("unknown step op %v", st["op"])
	}
	return nil
}

// owned is the partitions of topic the member owns now, sorted.
func (d *driver) owned(name, topic string) []int {
	var out []int
	for _, tp := range d.members[name].Assignment() {
		if tp.Topic == topic {
			out = append(out, tp.Partition)
		}
	}
	return out
}

func (d *driver) memberNext(ctx context.Context, name string) chan nextResult {
	if ch := d.memberPending[name]; ch != nil {
		delete(d.memberPending, name)
		return ch
	}
	ch := make(chan nextResult, 1)
	g := d.members[name]
	go func() {
		m, err := g.Next(ctx)
		ch <- nextResult{m, err}
	}()
	return ch
}

func (d *driver) runGroup(ctx context.Context, st step) error {
	switch st["op"] {
	case "joinGroup":
		c := d.open(ctx, []string{d.brokers[0].addr})
		var topics []string
		for _, x := range anyList(st["topics"]) {
			topics = append(topics, str(x))
		}
		cfg := gregormq.GroupConfig{ManualCommit: st["autoCommit"] != true}
		if str(st["reset"]) == "earliest" {
			cfg.Reset = gregormq.ResetEarliest
		}
		g, err := c.JoinGroup(ctx, str(st["group"]), topics, cfg)
		if err != nil {
			return err
		}
		d.members[str(st["member"])] = g
	case "awaitAssignment":
		want := st["members"].(map[string]any)
		deadline := time.Now().Add(assignmentTimeout)
		for {
			got := map[string][]int{}
			var all []int
			settled := true
			for name, n := range want {
				got[name] = d.owned(name, str(st["topic"]))
				all = append(all, got[name]...)
				settled = settled && int64(len(got[name])) == num(n)
			}
			sort.Ints(all)
			for i, p := range all {
				settled = settled && p == i
			}
			if settled && int64(len(all)) == num(st["partitions"]) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the group did not settle on %v in %v: %v", want, assignmentTimeout, got)
			}
			time.Sleep(assignmentPoll)
		}
	case "groupReceive":
		expected := anyList(st["expect"])
		matched := map[int]bool{}
		for _, x := range anyList(st["members"]) {
			name := str(x)
			mine := d.owned(name, str(st["topic"]))
			var want int
			for _, e := range expected {
				if slices.Contains(mine, int(num(e.(map[string]any)["partition"]))) {
					want++
				}
			}
			for n := 0; n < want; n++ {
				var r nextResult
				select {
				case r = <-d.memberNext(ctx, name):
				case <-time.After(receiveTimeout):
					return fmt.Errorf("%s: nothing received in %v", name, receiveTimeout)
				}
				if r.err != nil {
					return fmt.Errorf("%s: %w", name, r.err)
				}
				m := r.m
				at := fmt.Sprintf("%s received %s/%d@%d", name, m.Topic, m.Partition, m.Offset)
				if !slices.Contains(mine, m.Partition) {
					return fmt.Errorf("%s, a partition it does not own (%v)", at, mine)
				}
				i := slices.IndexFunc(expected, func(x any) bool {
					e := x.(map[string]any)
					return num(e["partition"]) == int64(m.Partition) && num(e["offset"]) == m.Offset
				})
				if i < 0 || matched[i] {
					return fmt.Errorf("%s, which is not expected here or came twice", at)
				}
				matched[i] = true
				if v, ok := expected[i].(map[string]any)["value"]; ok && string(m.Value) != v {
					return fmt.Errorf("%s holding %q, want %v", at, m.Value, v)
				}
			}
		}
		for i, e := range expected {
			if !matched[i] {
				return fmt.Errorf("no member owning its partition received %v", e)
			}
		}
	case "groupExpectNone":
		for _, x := range anyList(st["members"]) {
			name := str(x)
			ch := d.memberNext(ctx, name)
			select {
			case r := <-ch:
				return fmt.Errorf("%s received %+v (%v) but expected nothing", name, r.m, r.err)
			case <-time.After(time.Duration(num(st["ms"])) * time.Millisecond):
				d.memberPending[name] = ch
			}
		}
	case "groupCommit":
		g := d.members[str(st["member"])]
		of, ok := st["partitionOf"]
		if !ok {
			return g.Commit(ctx)
		}
		theirs := d.owned(str(of), str(st["topic"]))
		if len(theirs) == 0 {
			return fmt.Errorf("%s owns no partition of %s", of, st["topic"])
		}
		return g.CommitOffsets(ctx, []gregormq.PartitionOffset{
			{Topic: str(st["topic"]), Partition: theirs[0], Offset: num(st["offset"])}})
	case "leaveGroup":
		name := str(st["member"])
		err := d.members[name].Close(ctx)
		delete(d.members, name)
		delete(d.memberPending, name)
		return err
	}
	return nil
}

func anyList(v any) []any { l, _ := v.([]any); return l }

func (d *driver) publish(ctx context.Context, st step) error {
	codec, ok := gregormq.CodecByName(str(st["codec"]))
	if !ok {
		codec = gregormq.CodecNone
	}
	p := d.client.NewProducer(gregormq.ProducerConfig{Codec: codec, Linger: 5 * time.Millisecond})
	defer p.Close(ctx)
	msgs := anyList(st["messages"])
	type res struct {
		r   gregormq.Result
		err error
	}
	results := make([]chan res, len(msgs))
	for i, x := range msgs {
		m := x.(map[string]any)
		msg := gregormq.Message{Key: optBytes(m, "key"), Value: optBytes(m, "value")}
		if ts, ok := m["timestamp"]; ok {
			msg.Timestamp = time.UnixMilli(num(ts))
		}
		if p, ok := st["partition"]; ok {
			msg.Partition = gregormq.PartitionOf(int(num(p)))
		}
		ch := make(chan res, 1)
		results[i] = ch
		if err := p.SendAsync(ctx, str(st["topic"]), msg, func(r gregormq.Result, err error) { ch <- res{r, err} }); err != nil {
			return err
		}
	}
	var offsets, partitions []int64
	for _, ch := range results {
		r := <-ch
		if r.err != nil {
			return r.err
		}
		offsets = append(offsets, r.r.Offset)
		partitions = append(partitions, int64(r.r.Partition))
	}
	for field, got := range map[string][]int64{"expectOffsets": offsets, "expectPartitions": partitions} {
		if w, ok := st[field]; ok {
			var want []int64
			for _, x := range w.([]any) {
				want = append(want, num(x))
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("%s: got %v, want %v", field, got, want)
			}
		}
	}
	return nil
}
