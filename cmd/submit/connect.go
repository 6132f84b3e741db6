package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/queue"
)

func connect(ctx context.Context, url, creds, prefix string) (*nats.Conn, *queue.Queue, error) {
	opts := []nats.Option{nats.Name("smallscale-submit"), nats.Timeout(5 * time.Second), nats.MaxReconnects(-1)}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach NATS at %s: %w (is a worker running? set --nats or SMALLSCALE_NATS_URL)", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	q, err := queue.Open(ctx, js, prefix)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, q, nil
}
