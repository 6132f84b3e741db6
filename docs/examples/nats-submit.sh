#!/usr/bin/env bash
# nats-submit.sh — submit a smallscale job and wait for it with nothing but the nats CLI (plus
# bash, awk, base64 and coreutils): the protocol of docs/protocol.md, step by step.
#
# Usage: nats-submit.sh [-s URL] [-e NAME=VALUE]... [-t SECONDS] [--dry-run] RUNNER SCRIPT_FILE
#
#   -s, --server URL   NATS server; default $NATS_URL (or the nats CLI's selected context).
#                      Credentials come the nats CLI's way ($NATS_CREDS, --context, ...).
#   -e, --env N=V      an environment variable for the script (repeatable)
#   -t, --timeout S    the script's time limit in seconds (default: the worker's)
#   --dry-run          print the job message and the status entry it would write, and exit
#
# $SMALLSCALE_PREFIX changes the prefix of every name (default smallscale).
#
# The guest's output goes to stdout as it is produced; the job id and the outcome go to stderr.
# Exit status: the script's own, or, like `submit`:
#   64 bad arguments or script (nothing was queued)   69 no worker serves the runner
#   75 NATS could not be reached                      124 the job ran past its timeout
#   125 smallscale could not run the job              130 cancelled, or this script was interrupted
#   127 the nats CLI is missing
set -u -o pipefail

me=nats-submit
die() {
	local code=$1
	shift
	printf '%s: %s\n' "$me" "$*" >&2
	exit "$code"
}

usage() { die 64 "usage: $me [-s URL] [-e NAME=VALUE]... [-t SECONDS] [--dry-run] RUNNER SCRIPT_FILE"; }

server=() env_names=() env_values=() timeout= dry_run=
while [ $# -gt 0 ]; do
	case $1 in
	-s | --server) [ $# -ge 2 ] || usage; server=(--server "$2"); shift 2 ;;
	--server=*) server=(--server "${1#*=}"); shift ;;
	-e | --env) [ $# -ge 2 ] || usage; env_names+=("${2%%=*}"); env_values+=("${2#*=}")
		[[ $2 == *=* ]] || die 64 "--env wants NAME=VALUE, got '$2'"; shift 2 ;;
	-t | --timeout) [ $# -ge 2 ] || usage; timeout=$2; shift 2 ;;
	--dry-run) dry_run=1; shift ;;
	-h | --help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	--) shift; break ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -eq 2 ] || usage
runner=$1 script=$2

# Refuse what a worker would refuse (queue.Job.Validate), so that nothing bad is queued.
[[ $runner =~ ^[a-z0-9][a-z0-9_-]*$ && ${#runner} -le 64 ]] ||
	die 64 "runner name '$runner' must match [a-z0-9][a-z0-9_-]* (at most 64 characters)"
[ -f "$script" ] && [ -r "$script" ] || die 64 "script $script is not a readable file"
size=$(wc -c <"$script") || die 64 "script $script cannot be read"
[ "$size" -gt 0 ] || die 64 "script $script is empty"
[ "$size" -le 262144 ] || die 64 "script $script is $size bytes, over the limit of 262144"
[ "$(tr -d '\000' <"$script" | wc -c)" -eq "$size" ] || die 64 "script $script contains NUL bytes"
if LC_ALL=C.UTF-8 grep -qaxv '.*' "$script" 2>/dev/null; then
	die 64 "script $script is not valid UTF-8"
fi
[ ${#env_names[@]} -le 256 ] || die 64 "at most 256 --env variables"
declare -A seen=()
for name in ${env_names[@]+"${env_names[@]}"}; do
	[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die 64 "env name '$name' must match [A-Za-z_][A-Za-z0-9_]*"
	[[ $name != CI_* ]] || die 64 "env name '$name': the CI_ prefix is reserved for smallscale"
	[ -z "${seen[$name]:-}" ] || die 64 "--env $name given twice"
	seen[$name]=1
done
if [ -n "$timeout" ]; then
	[[ $timeout =~ ^[0-9]+$ ]] && [ "$timeout" -le 86400 ] || die 64 "--timeout wants whole seconds, 0 to 86400"
fi

tmp=$(mktemp -d) || exit 1
pids=()
cleanup() {
	local p
	for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'printf "%s: interrupted; job %s goes on\n" "$me" "${id:-}" >&2; exit 130' INT TERM

# json_string FILE: FILE's bytes as a JSON string, quotes included. UTF-8 passes through as it
# is; the quote, the backslash and every control character are escaped. awk reads lines, so
# newlines are put back between them, and after the last one when the file ends with one.
json_string() {
	local final_newline=0
	[ -n "$(tail -c 1 "$1")" ] || final_newline=1
	LC_ALL=C awk -v final_newline="$final_newline" '
		BEGIN {
			for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
			esc["\t"] = "\\t"; esc["\r"] = "\\r"; esc["\""] = "\\\""; esc["\\"] = "\\\\"
			printf "%s", "\""
		}
		NR > 1 { printf "%s", "\\n" }
		{
			n = length($0)
			for (i = 1; i <= n; i++) {
				c = substr($0, i, 1)
				printf "%s", ((c in esc) ? esc[c] : c)
			}
		}
		END { if (final_newline && NR > 0) printf "%s", "\\n"; printf "%s", "\"" }
	' "$1"
}

# A UUIDv7: 48 bits of Unix milliseconds, then the random bits of a kernel UUIDv4 (its variant
# bits are the same). Time-ordered ids keep `submit list` newest first; any UUID is accepted.
ms=$(date +%s%3N)
case $ms in *[!0-9]*) ms=$(($(date +%s) * 1000)) ;; esac
r=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen -r) || die 64 "no UUID source"
t=$(printf '%012x' "$ms")
id="${t:0:8}-${t:8:4}-7${r:15:3}-${r:19:4}-${r:24:12}"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# The job message (docs/schema/job.schema.json).
{
	printf '{"format":1,"id":"%s","runner":"%s","script":' "$id" "$runner"
	json_string "$script"
	if [ ${#env_names[@]} -gt 0 ]; then
		printf ',"env":{'
		for i in "${!env_names[@]}"; do
			printf '%s' "${env_values[$i]}" >"$tmp/value"
			[ "$i" -eq 0 ] || printf ','
			printf '"%s":' "${env_names[$i]}"
			json_string "$tmp/value"
		done
		printf '}'
	fi
	[ -z "$timeout" ] || printf ',"timeout_seconds":%d' "$((10#$timeout))"
	printf ',"submitted_at":"%s"}' "$now"
} >"$tmp/job.json" || die 64 "cannot build the job message"
# Its status entry while queued (docs/schema/status.schema.json).
status=$(printf '{"job_id":"%s","runner":"%s","state":"queued","submitted_at":"%s","updated_at":"%s","phases":[{"name":"queued","at":"%s"}]}' \
	"$id" "$runner" "$now" "$now" "$now")

if [ -n "$dry_run" ]; then
	cat "$tmp/job.json"
	printf '\n%s\n' "$status"
	exit 0
fi

command -v nats >/dev/null || die 127 "the nats CLI is not on PATH (go install github.com/nats-io/natscli/nats@v0.5.0)"
prefix=${SMALLSCALE_PREFIX:-smallscale}
upper=$(printf '%s' "$prefix" | tr 'a-z-' 'A-Z_')

# 1. Some worker must have registered the runner's durable consumer, or nothing would ever pull
#    the job (submit exits 69 then, too).
if ! info=$(nats ${server[@]+"${server[@]}"} req --raw "\$JS.API.CONSUMER.INFO.${upper}_JOBS.runner-$runner" '' </dev/null 2>"$tmp/err"); then
	grep -q 'no responders' "$tmp/err" && die 69 "JetStream is not enabled on this NATS server: $(cat "$tmp/err")"
	die 75 "NATS could not be reached: $(cat "$tmp/err")"
fi
case $info in
*'"err_code":10059'*) die 69 "stream ${upper}_JOBS does not exist: no worker ever set up this NATS server" ;;
*'"err_code":10014'*) die 69 "no worker serves runner $runner (no consumer runner-$runner)" ;;
*'"error"'*) die 75 "looking up runner $runner: $info" ;;
esac

# 2. The status entry first, so that a worker always finds it and a cancel works while queued.
#    kv create fails when the key exists: a job id is used once.
if ! nats ${server[@]+"${server[@]}"} kv create "$prefix-jobs" "$id" "$status" </dev/null >/dev/null 2>"$tmp/err"; then
	grep -qi "wrong last sequence" "$tmp/err" && die 64 "job id $id is taken; a job needs a new id"
	grep -qi "bucket not found" "$tmp/err" && die 69 "bucket $prefix-jobs does not exist: no worker ever set up this NATS server"
	die 75 "cannot record job $id as queued: $(cat "$tmp/err")"
fi

# 3. The job, through JetStream (-J waits for the stream's ack) with its id as Nats-Msg-Id.
#    Templates are off: a script may well contain {{ }}.
if ! nats ${server[@]+"${server[@]}"} pub -J --no-templates --force-stdin -H "Nats-Msg-Id:$id" \
	"$prefix.jobs.$runner" <"$tmp/job.json" >/dev/null 2>"$tmp/err"; then
	nats ${server[@]+"${server[@]}"} kv del -f "$prefix-jobs" "$id" </dev/null >/dev/null 2>&1
	die 75 "publish job $id: $(cat "$tmp/err")"
fi
grep -q 'Duplicate: true' "$tmp/err" && die 64 "job id $id was published before; a resubmission needs a new id"
printf '%s: job %s queued on runner %s\n' "$me" "$id" "$runner" >&2

# 4. Follow the result and the output. Both are read from their streams from the first
#    message, so nothing is lost however late the followers start.
nats ${server[@]+"${server[@]}"} sub --stream "${upper}_RESULTS" --all --count 1 --raw \
	"$prefix.results.$id" </dev/null >"$tmp/result" 2>"$tmp/result.err" &
result_pid=$!
pids+=("$result_pid")

# Each output chunk arrives as a NUL-terminated JSON record whose "Data" is the chunk in base64;
# the decoder writes the bytes to stdout as they come and counts the chunks.
mkfifo "$tmp/logs"
nats ${server[@]+"${server[@]}"} sub --stream "${upper}_LOGS" --all --dump=- \
	"$prefix.logs.$id" </dev/null >"$tmp/logs" 2>"$tmp/logs.err" &
pids+=("$!")
logs_pid=$!
(
	n=0
	while IFS= read -r -d '' rec; do
		case $rec in
		*',"Data":"'*)
			b64=${rec##*,\"Data\":\"}
			printf '%s' "${b64%%\"*}" | base64 -d || exit 1
			;;
		esac
		n=$((n + 1))
		echo "$n" >"$tmp/chunks"
	done
) <"$tmp/logs" &
decoder_pid=$!
pids+=("$decoder_pid")

if ! wait "$result_pid"; then
	die 75 "following job $id: $(cat "$tmp/result.err")"
fi
result=$(cat "$tmp/result")

# 5. The result says how many chunks the output has: wait for all of them (a little while).
field() { sed -n "s/.*\"$1\":\\($2\\).*/\\1/p" <<<"$result"; }
want=$(field log_chunks '[0-9]*')
for _ in $(seq 100); do
	got=$(cat "$tmp/chunks" 2>/dev/null || echo 0)
	[ "$got" -ge "${want:-0}" ] && break
	sleep 0.1
done
kill "$logs_pid" 2>/dev/null
wait "$decoder_pid" 2>/dev/null
got=$(cat "$tmp/chunks" 2>/dev/null || echo 0)
[ "$got" -ge "${want:-0}" ] || printf '%s: warning: %s of %s output chunks arrived\n' "$me" "$got" "$want" >&2

# 6. The outcome. The result is compact JSON from Go; inside strings every quote is escaped, so
#    these patterns only match the top-level fields.
state=$(field state '"[a-z_]*"')
state=${state//\"/}
code=$(field exit_code '-\{0,1\}[0-9]\{1,\}')
error=$(field error '"\([^"\\]\|\\.\)*"')
error=${error#\"} error=${error%\"}
case $state in
succeeded | failed)
	printf '%s: job %s %s (exit %s)\n' "$me" "$id" "$state" "$code" >&2
	[ -z "$error" ] || printf '%s: warning: %s\n' "$me" "$error" >&2
	[ -n "$code" ] && [ "$code" -ge 0 ] && [ "$code" -le 255 ] && exit "$code"
	exit 125
	;;
timed_out) die 124 "job $id timed out: $error" ;;
cancelled) die 130 "job $id was cancelled: $error" ;;
*) die 125 "job $id could not run ($state): $error" ;;
esac
