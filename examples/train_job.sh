#!/usr/bin/env bash
# A CPU-only stand-in for a training job that follows miso's job protocols (README, "Job
# protocol"), so the service walkthrough runs on any machine:
#   - checkpoint: on SIGTERM save the step reached to $MISO_CHECKPOINT_DIR and exit 0; when
#     started again resume from there;
#   - iteration report: the agent (and `miso profile`) sets MISO_REPORT_HOST/PORT; the job then
#     sends one line per iteration, "<MISO_JOB> <seconds of that iteration>" (under MPS for the
#     profile; on its MIG instance for an observation the controller learns from).
# An iteration sleeps BASE seconds scaled by the share of the GPU the job has: its MPS thread
# percentage while profiled, the compute slices of its MIG instance (e.g. 3 of 7 for
# 3g.20gb@4) otherwise, so its speed depends on its slice as a GPU job's would.
#
# Usage: train_job.sh [STEPS (default 100)] [BASE seconds per iteration (default 0.02)]
set -u
steps=${1:-100}
base=${2:-0.02}
ck=${MISO_CHECKPOINT_DIR:-.}/step
step=$(cat "$ck" 2>/dev/null || echo 0)
trap 'echo "$step" > "$ck"; exit 0' TERM

share=100                                   # percent of a whole GPU
if [ -n "${CUDA_MPS_ACTIVE_THREAD_PERCENTAGE:-}" ]; then
  share=$CUDA_MPS_ACTIVE_THREAD_PERCENTAGE
elif [[ "${MISO_INSTANCE:-}" =~ ^([1-7])g ]]; then
  share=$(( BASH_REMATCH[1] * 100 / 7 ))
fi
pause=$(awk -v b="$base" -v s="$share" 'BEGIN { printf "%.4f", b * 100 / s }')

report=""
if [ -n "${MISO_REPORT_PORT:-}" ]; then
  exec 3<>"/dev/tcp/${MISO_REPORT_HOST:-127.0.0.1}/$MISO_REPORT_PORT" && report=1
fi
now() { date +%s.%N; }
while [ "$step" -lt "$steps" ]; do
  t0=$(now)
  sleep "$pause" & wait $!                  # `wait` lets the TERM trap run at once
  step=$((step + 1))
  if [ -n "$report" ]; then
    echo "${MISO_JOB:-job} $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.5f", b - a }')" >&3
  fi
done
echo "$step" > "$ck"
echo "${MISO_JOB:-job}: trained $steps steps"
