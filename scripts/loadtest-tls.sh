#!/usr/bin/env bash
# Load test of POST /v1/recommend at 1,000 req/s, plain HTTP and HTTPS (rustls) on loopback,
# alternating runs so both see the same machine noise. Makes a throwaway CA and a leaf
# certificate with openssl, starts two controllers (release build), prints one line per run
# and the best and median p99 of each.
#   scripts/loadtest-tls.sh [RUNS=5] [SECONDS=10]
set -euo pipefail
runs=${1:-5}
secs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
m="$root/target/release/miso"
d=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$d"' EXIT
cd "$d"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=miso-loadtest-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout key.pem -out leaf.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > ext.cnf
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
  -extfile ext.cnf -out cert.pem 2>/dev/null
head -c 24 /dev/urandom | base64 > token && chmod 600 token
"$m" serve --listen 127.0.0.1:7481 --db plain.db --token-file token --no-access-log >/dev/null &
"$m" serve --listen 127.0.0.1:7482 --db tls.db --token-file token --no-access-log \
  --tls-cert cert.pem --tls-key key.pem >/dev/null &
for port in 7481 7482; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
plain=(--controller http://127.0.0.1:7481 --token-file token)
tls=(--controller https://127.0.0.1:7482 --ca-file ca.pem --token-file token)
"$m" loadtest "${plain[@]}" --rps 1000 --seconds 2 >/dev/null   # warm-up
"$m" loadtest "${tls[@]}" --rps 1000 --seconds 2 >/dev/null
p99() {
  "$m" loadtest "$@" --rps 1000 --seconds "$secs" --json |
    python3 -c 'import json, sys; r = json.load(sys.stdin); print("%.2f %.2f %d" % (r["p50_ms"], r["p99_ms"], r["errors"]))'
}
: > plain.txt; : > tls.txt
for i in $(seq "$runs"); do
  a=$(p99 "${plain[@]}"); b=$(p99 "${tls[@]}")
  echo "$a" >> plain.txt; echo "$b" >> tls.txt
  echo "run $i: http p50/p99/errors $a   https $b"
done
# The best run is the one the machine left alone (on a shared host whole runs slow down: p50
# itself jumps from 0.5 to 4 ms); the median says how often that happens.
stats() { cut -d' ' -f2 "$1" | sort -n | awk '{a[NR]=$1} END{printf "best %s, median %s", a[1], a[int((NR+1)/2)]}'; }
echo "p99 ms over $runs runs of ${secs} s at 1,000 req/s: http $(stats plain.txt); https $(stats tls.txt)"
