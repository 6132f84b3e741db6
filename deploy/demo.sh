#!/usr/bin/env bash
# make demo: start a worker on an embedded NATS server, submit examples/hello.sh to it, print
# the job's output, stop the worker. Exits with the job's exit status.
set -euo pipefail
cd "$(dirname "$0")/.."

state=$(mktemp -d /tmp/smallscale-demo.XXXXXX)
port=${SMALLSCALE_DEMO_PORT:-14222}
export SMALLSCALE_NATS_LISTEN=127.0.0.1:$port SMALLSCALE_DATA_DIR=$state
export SMALLSCALE_RUNNERS=tiny SMALLSCALE_DOMAIN_TYPE=${SMALLSCALE_DOMAIN_TYPE:-qemu}
unset SMALLSCALE_NATS_URL

bin/worker >"$state/worker.log" 2>&1 &
worker=$!
cleanup() {
  kill -TERM "$worker" 2>/dev/null && wait "$worker" 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT

for _ in $(seq 300); do
  grep -q 'worker ready' "$state/worker.log" && break
  kill -0 "$worker" 2>/dev/null || { cat "$state/worker.log" >&2; echo "demo: the worker stopped" >&2; exit 1; }
  sleep 0.1
done
grep -q 'worker ready' "$state/worker.log" || { cat "$state/worker.log" >&2; echo "demo: the worker did not get ready in 30 s" >&2; exit 1; }

echo "demo: worker ready; submitting examples/hello.sh to runner tiny" >&2
set +e
bin/submit --nats "nats://127.0.0.1:$port" --runner tiny --script examples/hello.sh --env GREETING=hello
code=$?
set -e
echo "demo: submit exited with $code" >&2
exit $code
