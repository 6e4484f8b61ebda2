#!/usr/bin/env bash
# Does one slow request stall the others? Starts a controller (loopback, no auth, a fresh
# database), registers 8 A100s and queues 2,000 jobs, then times GET /v1/jobs and GET /healthz
# (a) while POST /v1/schedule places all 2,000 jobs, and (b) while a client sends a 1 MiB plan
# body of 110,000 job ids. Prints the slowest reply of each kind in milliseconds.
#
# Usage: scripts/no-stall.sh [MISO_BINARY (default: miso on PATH)] [PORT (default 7466)]
set -euo pipefail
bin=${1:-miso}
port=${2:-7466}
url=http://127.0.0.1:$port
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
"$bin" serve --insecure-no-auth --listen 127.0.0.1:$port --db "$dir/miso.db" > "$dir/serve.log" 2>&1 &
until curl -s "$url/healthz" > /dev/null; do sleep 0.1; done
post() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' "$url$1" -d "$2"; }
gpus=$(for i in 0 1 2 3 4 5 6 7; do printf '{"index":%d,"model":"a100-40gb"},' $i; done)
[ "$(post /v1/nodes "{\"name\":\"n1\",\"gpus\":[${gpus%,}]}")" = 201 ]
wl=(bert_train8 resnet_train64 gnn_train128 mobilenet_train64 transformer_train16 embedding_train256 cyclegan_train2 deepspeech2_train4)
for i in $(seq 0 1999); do
  printf '{"id":"j%d","workload":"%s"}\n' "$i" "${wl[$((i % 8))]}"
done | while read -r j; do post /v1/jobs "$j" > /dev/null; done

# Slowest of N replies to GET PATH, in ms, sampled while the background request runs.
slowest() {
  local worst=0 t
  for _ in $(seq 1 "$2"); do
    t=$(curl -s -o /dev/null -w '%{time_total}' "$url$1")
    worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b * 1000 > a) ? b * 1000 : a }')
  done
  printf '%.1f' "$worst"
}

echo "idle:            GET /v1/jobs $(slowest /v1/jobs 5) ms, GET /healthz $(slowest /healthz 5) ms (slowest of 5)"
start=$(date +%s.%N)
curl -s -o "$dir/schedule.json" -H 'Content-Type: application/json' "$url/v1/schedule" -d '{}' &
sched=$!
sleep 0.2
j=$(slowest /v1/jobs 10); h=$(slowest /healthz 10)
wait $sched
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
placed=$(grep -o "\"node\"" "$dir/schedule.json" | wc -l || true)
echo "during schedule: GET /v1/jobs $j ms, GET /healthz $h ms (slowest of 10); the schedule took $took s and placed $placed jobs"

ids=$(seq 0 109999 | sed 's/.*/"x&"/' | paste -sd, -)
printf '{"jobs":[%s]}' "$ids" > "$dir/big.json"
curl -s -o /dev/null -H 'Content-Type: application/json' "$url/v1/nodes/n1/gpus/0/plan" --data-binary @"$dir/big.json" &
big=$!
j=$(slowest /v1/jobs 10)
wait $big
echo "during a $(stat -c %s "$dir/big.json")-byte plan body: GET /v1/jobs $j ms (slowest of 10)"
