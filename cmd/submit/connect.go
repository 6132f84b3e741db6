package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/smallscale-ci/smallscale/queue"
)

// connOptions are the flags every command shares: where the queue is and how to print.
type connOptions struct {
	natsURL, creds, prefix string
	json                   bool
}

func (c *connOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&c.natsURL, "nats", envOr("SMALLSCALE_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL (env SMALLSCALE_NATS_URL)")
	fs.StringVar(&c.creds, "creds", os.Getenv("SMALLSCALE_NATS_CREDS"), "NATS credentials file (env SMALLSCALE_NATS_CREDS)")
	fs.StringVar(&c.prefix, "prefix", envOr("SMALLSCALE_PREFIX", queue.DefaultPrefix), "prefix of subjects and streams (env SMALLSCALE_PREFIX)")
	fs.BoolVar(&c.json, "json", false, "machine-readable output on stdout")
}

func (c *connOptions) connect(ctx context.Context) (*nats.Conn, *queue.Queue, error) {
	return connect(ctx, c.natsURL, c.creds, c.prefix)
}

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

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
