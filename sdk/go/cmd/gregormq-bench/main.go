// Command gregormq-bench measures the Go SDK against a running broker: produce of fixed-size
// messages with at most -window unconfirmed, and produce→consume, printing one JSON line per
// scenario. bench/go_sdk.ts runs it beside the TypeScript client against the same broker.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"time"

	gregormq "gregormq.dev/sdk/go"
)

func main() {
	server := flag.String("server", "127.0.0.1:7070", "broker address host:port")
	topic := flag.String("topic", "bench-go", "topic prefix (each scenario appends its name)")
	count := flag.Int("count", 200_000, "messages per scenario")
	size := flag.Int("size", 100, "payload bytes per message")
	window := flag.Int("window", 10_000, "unconfirmed messages at most")
	linger := flag.Duration("linger", 2*time.Millisecond, "how long a batch waits to fill")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of both scenarios to this file (for go tool pprof)")
	memProfile := flag.String("memprofile", "", "write a profile of the allocations of both scenarios to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client, err := gregormq.Dial(ctx, gregormq.Config{Servers: []string{*server}, ClientID: "gregormq-bench"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	value := make([]byte, *size)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	if *memProfile != "" {
		defer writeAllocs(*memProfile)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, scenario := range []string{"produce", "produce-consume"} {
		name := fmt.Sprintf("%s-%s", *topic, scenario)
		if err := client.CreateTopic(ctx, name, 1, map[string]string{"persistence": "memory"}); err != nil {
			log.Fatal(err)
		}
		elapsed, err := run(ctx, client, name, scenario == "produce-consume", value, *count, *window, *linger)
		if err != nil {
			log.Fatal(err)
		}
		_ = enc.Encode(map[string]any{"client": "go", "scenario": scenario, "messages": *count,
			"bytes": *size, "seconds": elapsed.Seconds(), "msgsPerSec": float64(*count) / elapsed.Seconds()})
	}
}

// run publishes count messages keeping at most window unconfirmed; with consume it also reads
// them back and counts a message confirmed when it is received.
func run(ctx context.Context, client *gregormq.Client, topic string, consume bool, value []byte, count, window int, linger time.Duration) (time.Duration, error) {
	slots := make(chan struct{}, window)
	errs := make(chan error, 1)
	var sub *gregormq.Subscription
	if consume {
		var err error
		sub, err = client.Subscribe(ctx, topic, gregormq.SubscribeConfig{From: gregormq.FromEarliest,
			NoAcks: true, WindowMessages: window})
		if err != nil {
			return 0, err
		}
		defer sub.Close(ctx)
	}
	p := client.NewProducer(gregormq.ProducerConfig{Linger: linger})
	defer p.Close(ctx)
	received := make(chan struct{})
	start := time.Now()
	if consume {
		go func() {
			for range count {
				if _, err := sub.Next(ctx); err != nil {
					errs <- err
					return
				}
				<-slots
			}
			close(received)
		}()
	}
	for range count {
		select {
		case slots <- struct{}{}:
		case err := <-errs:
			return 0, err
		}
		err := p.SendAsync(ctx, topic, gregormq.Message{Value: value}, func(_ gregormq.Result, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			if !consume {
				<-slots
			}
		})
		if err != nil {
			return 0, err
		}
	}
	if err := p.Flush(ctx); err != nil {
		return 0, err
	}
	if consume {
		select {
		case <-received:
		case err := <-errs:
			return 0, err
		}
	}
	return time.Since(start), nil
}

// writeAllocs writes the allocation profile to path.
func writeAllocs(path string) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		log.Fatal(err)
	}
}
