package gregormq_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	gregormq "gregormq.dev/sdk/go"
)

func ExampleDial() {
	ctx := context.Background()
	// The first server that answers is used; the others take over when it is lost.
	client, err := gregormq.Dial(ctx, gregormq.Config{
		Servers: []string{"10.0.0.1:7070", "10.0.0.2:7070"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
}

func ExampleProducer_SendAsync() {
	ctx := context.Background()
	client, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{"127.0.0.1:7070"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	p := client.NewProducer(gregormq.ProducerConfig{Codec: gregormq.CodecZstd, Linger: 5 * time.Millisecond})
	for i := range 1000 {
		msg := gregormq.Message{Key: []byte(fmt.Sprintf("user-%d", i%10)), Value: []byte("clicked")}
		err := p.SendAsync(ctx, "clicks", msg, func(r gregormq.Result, err error) {
			if err != nil {
				log.Print(err)
			}
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil { // waits for every answer
		log.Fatal(err)
	}
}

func ExampleClient_Subscribe() {
	ctx := context.Background()
	client, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{"127.0.0.1:7070"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	sub, err := client.Subscribe(ctx, "orders", gregormq.SubscribeConfig{
		From:       gregormq.FromEarliest,
		Durable:    "billing", // resumes after the last acknowledged offset
		AckTimeout: 10 * time.Second,
	})
	if errors.Is(err, gregormq.ErrSubscriptionInUse) {
		log.Fatal("another billing consumer is running")
	} else if err != nil {
		log.Fatal(err)
	}
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %s\n", m.Offset, m.Value)
		if err := sub.Ack(m.Offset); err != nil {
			log.Fatal(err)
		}
	}
}

func ExampleError() {
	err := error(&gregormq.Error{Code: gregormq.CodeUnknownTopic, Message: "Topic payments does not exist"})
	var ge *gregormq.Error
	if errors.As(err, &ge) {
		fmt.Println(ge.Code, ge.Code.Retriable(), errors.Is(err, gregormq.ErrUnknownTopic))
	}
	// Output: UNKNOWN_TOPIC false true
}

func ExamplePartitionForKey() {
	// The partition Kafka's default partitioner picks too.
	fmt.Println(gregormq.PartitionForKey([]byte("foobar"), 4))
	// Output: 2
}

func ExampleClient_JoinGroup() {
	ctx := context.Background()
	client, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{"127.0.0.1:7070"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	// Every member of "billing" gets a share of the partitions of "orders"; processed offsets are
	// committed every second, when a partition moves away and on Close.
	orders, err := client.JoinGroup(ctx, "billing", []string{"orders"}, gregormq.GroupConfig{
		Reset: gregormq.ResetEarliest,
		OnRevoked: func(ctx context.Context, partitions []gregormq.TopicPartition) {
			log.Printf("giving back %v", partitions)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer orders.Close(ctx)
	for {
		msg, err := orders.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s/%d@%d: %s\n", msg.Topic, msg.Partition, msg.Offset, msg.Value)
	}
}
