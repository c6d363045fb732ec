package gregormq

import "context"

// TopicSummary is one entry of ListTopics.
type TopicSummary struct {
	Name       string
	Partitions int
}

// PartitionInfo describes one partition of a topic.
type PartitionInfo struct {
	Partition         int
	LogStartOffset    int64
	HighWatermark     int64
	SizeBytes         int64
	Subscribers       int
	DamagedFromOffset int64
	// Leader is the node leading the partition; "" if none is known, and outside a cluster.
	Leader string
	// Replicas are the nodes holding a replica (a single node: itself).
	Replicas []string
	// ISR are the replicas in sync with the leader, the leader included; empty unless the node
	// asked leads the partition.
	ISR []string
	// Moving is true while the partition's replicas move to Replicas.
	Moving bool
}

// TopicDescription is the answer of DescribeTopic.
type TopicDescription struct {
	Name       string
	Configs    map[string]string
	Partitions []PartitionInfo
}

// CreateTopic creates a topic with the given partition count and configs (nil for the defaults).
// It fails with ErrTopicExists or ErrInvalidTopic.
func (cl *Client) CreateTopic(ctx context.Context, name string, partitions int, configs map[string]string) error {
	if configs == nil {
		configs = map[string]string{}
	}
	_, err := cl.call(ctx, OpCreateTopic, Msg{"name": name, "partitions": partitions, "configs": configs})
	return err
}

// DeleteTopic deletes a topic and its durable subscriptions. It fails with ErrUnknownTopic.
func (cl *Client) DeleteTopic(ctx context.Context, name string) error {
	_, err := cl.call(ctx, OpDeleteTopic, Msg{"name": name})
	cl.forgetTopic(name)
	return err
}

// ListTopics lists every topic.
func (cl *Client) ListTopics(ctx context.Context) ([]TopicSummary, error) {
	resp, err := cl.call(ctx, OpListTopics, Msg{})
	if err != nil {
		return nil, err
	}
	var out []TopicSummary
	for _, t := range resp["topics"].([]Msg) {
		out = append(out, TopicSummary{Name: t["name"].(string), Partitions: int(t["partitions"].(int64))})
	}
	return out, nil
}

// DescribeTopic describes a topic's configs and partitions. It fails with ErrUnknownTopic.
func (cl *Client) DescribeTopic(ctx context.Context, name string) (*TopicDescription, error) {
	resp, err := cl.call(ctx, OpDescribeTopic, Msg{"name": name})
	if err != nil {
		return nil, err
	}
	d := &TopicDescription{Name: resp["name"].(string), Configs: resp["configs"].(map[string]string)}
	for _, p := range resp["partitions"].([]Msg) {
		d.Partitions = append(d.Partitions, PartitionInfo{
			Partition: int(p["partition"].(int64)), LogStartOffset: p["logStartOffset"].(int64),
			HighWatermark: p["highWatermark"].(int64), SizeBytes: p["sizeBytes"].(int64),
			Subscribers: int(p["subscribers"].(int64)), DamagedFromOffset: p["damagedFromOffset"].(int64),
			Leader: p["leader"].(string), Replicas: nodeIDs(p["replicas"].([]Msg)),
			ISR: nodeIDs(p["isr"].([]Msg)), Moving: p["moving"].(int64) == 1,
		})
	}
	return d, nil
}

func nodeIDs(list []Msg) []string {
	out := make([]string, len(list))
	for i, n := range list {
		out[i] = n["id"].(string)
	}
	return out
}

// GroupSummary is one entry of ListGroups.
type GroupSummary struct {
	Group string
	// State is "empty" (no members), "stable" (every partition where the assignment wants it) or
	// "reconciling" (partitions are moving).
	State      string
	Members    int
	Generation int64
}

// GroupMember is one member of a DescribeGroup answer, with the partitions it owns now.
type GroupMember struct {
	MemberID   string
	InstanceID string
	ClientID   string
	Generation int64
	Assigned   []TopicPartition
}

// GroupOffset is a group's committed offset of one partition (-1 if none) and the partition's
// high watermark (-1 if it no longer exists): the lag is HighWatermark - Offset.
type GroupOffset struct {
	Topic         string
	Partition     int
	Offset        int64
	HighWatermark int64
}

// GroupDescription is the answer of DescribeGroup.
type GroupDescription struct {
	Group      string
	State      string
	Generation int64
	Assignor   string
	Members    []GroupMember
	Offsets    []GroupOffset
}

// ListGroups lists every group with live members or committed offsets, sorted by name.
func (cl *Client) ListGroups(ctx context.Context) ([]GroupSummary, error) {
	resp, err := cl.call(ctx, OpListGroups, Msg{})
	if err != nil {
		return nil, err
	}
	var out []GroupSummary
	for _, g := range resp["groups"].([]Msg) {
		out = append(out, GroupSummary{Group: g["group"].(string), State: g["state"].(string),
			Members: int(g["members"].(int64)), Generation: g["generation"].(int64)})
	}
	return out, nil
}

// DescribeGroup describes a group's members, what each owns, and its committed offsets. It fails
// with ErrInvalidRequest for a group with neither members nor offsets.
func (cl *Client) DescribeGroup(ctx context.Context, group string) (*GroupDescription, error) {
	resp, err := cl.call(ctx, OpDescribeGroup, Msg{"group": group})
	if err != nil {
		return nil, err
	}
	d := &GroupDescription{Group: resp["group"].(string), State: resp["state"].(string),
		Generation: resp["generation"].(int64), Assignor: resp["assignor"].(string),
		Offsets: groupOffsets(resp["offsets"].([]Msg))}
	for _, m := range resp["members"].([]Msg) {
		gm := GroupMember{MemberID: m["memberId"].(string), InstanceID: m["instanceId"].(string),
			ClientID: m["clientId"].(string), Generation: m["generation"].(int64)}
		for _, tp := range m["assigned"].([]Msg) {
			gm.Assigned = append(gm.Assigned, TopicPartition{Topic: tp["topic"].(string),
				Partition: int(tp["partition"].(int64))})
		}
		d.Members = append(d.Members, gm)
	}
	return d, nil
}

// CommittedOffsets is the group's committed offsets of these partitions (none: every partition
// it has committed).
func (cl *Client) CommittedOffsets(ctx context.Context, group string, partitions []TopicPartition) ([]GroupOffset, error) {
	resp, err := cl.call(ctx, OpOffsetFetch, Msg{"group": group, "partitions": partitionList(partitions)})
	if err != nil {
		return nil, err
	}
	return groupOffsets(resp["offsets"].([]Msg)), nil
}

func groupOffsets(list []Msg) []GroupOffset {
	var out []GroupOffset
	for _, o := range list {
		out = append(out, GroupOffset{Topic: o["topic"].(string), Partition: int(o["partition"].(int64)),
			Offset: o["offset"].(int64), HighWatermark: o["highWatermark"].(int64)})
	}
	return out
}

// ResetOffsets moves the group's committed offsets of a topic's partitions (none: all of them)
// to where `to` says: FromEarliest, FromLatest, FromOffset (clipped to each partition's range) or
// FromTimestamp. Unlike a commit it may move them backwards. With dryRun it changes nothing and
// answers what it would set. It fails with ErrGroupNotEmpty while the group has live members.
func (cl *Client) ResetOffsets(ctx context.Context, group, topic string, partitions []int, to From, dryRun bool) ([]GroupOffset, error) {
	list := make([]Msg, len(partitions))
	for i, p := range partitions {
		list[i] = Msg{"partition": p}
	}
	dry := 0
	if dryRun {
		dry = 1
	}
	resp, err := cl.call(ctx, OpResetOffsets, Msg{"group": group, "topic": topic, "partitions": list,
		"to": to.start, "value": to.value, "dryRun": dry})
	if err != nil {
		return nil, err
	}
	return groupOffsets(resp["offsets"].([]Msg)), nil
}
