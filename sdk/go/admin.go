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
	Leader            string
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
			Leader: p["leader"].(string),
		})
	}
	return d, nil
}
