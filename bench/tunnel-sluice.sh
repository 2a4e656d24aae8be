#!/usr/bin/env bash
# tunnel-sluice.sh INTEROP_DIR - iperf3 through two sluice endpoints on the interop
# test bed (netns sl-a / sl-b, veth 192.168.77.1 <-> .2, inner 10.77.1.1 <-> 10.77.2.1
# on lo), measured by the same bench-lib.sh iperf_series as every other peer, plus
# the CPU of each thread of both endpoints. Env: as bench-lib.sh (REPEAT, DURATION, RESULTS).
set -euo pipefail
INTEROP=$1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
source "$INTEROP/bench-lib.sh"
WORK=$(mktemp -d /tmp/sluice-tunnel-XXXXXX)
pids=()
cleanup() {
  stop_iperf_server
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  "$INTEROP/netns.sh" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$INTEROP/netns.sh" up >/dev/null
export SLUICE_BENCH_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
write_config() { # NAME LOCAL PEER SELECTOR SPI_OUT SPI_IN
  cat > "$WORK/$1.toml" <<CONF
[local]
address = "$2"
[tun]
name = "sluice0"
[state]
dir = "$WORK/state-$1"
[[peer]]
name = "peer"
endpoint = "$3:4500"
selectors = ["$4"]
secret_env = "SLUICE_BENCH_SECRET"
spi_out = $5
spi_in = $6
CONF
}
write_config a "$UL_A" "$UL_B" "$NET_B" 4097 8193
write_config b "$UL_B" "$UL_A" "$NET_A" 8193 4097
for side in a b; do
  ns=$NS_A; [[ $side == b ]] && ns=$NS_B
  ip netns exec "$ns" node "$ROOT/dist/src/cli/main.js" up -c "$WORK/$side.toml" > "$WORK/$side.log" 2>&1 &
  pids+=($!)
done
for side in a b; do
  for _ in $(seq 100); do grep -q '"event":"up"' "$WORK/$side.log" && break; sleep 0.1; done
  grep -q '"event":"up"' "$WORK/$side.log" || { echo "sluice endpoint $side did not come up:"; cat "$WORK/$side.log"; exit 1; }
done
# The node processes are children of 'ip netns exec' (which execs): the pids are node's.
ping_out=$(ip netns exec "$NS_A" ping -c 2 -W 2 -I "$IN_A" "$IN_B" | tail -1)
echo "sluice tunnel up: $ping_out"

# Per-thread CPU over the TCP runs only (the rate the target is about):
# /proc/PID/task/TID/stat utime+stime, by thread name.
thread_ticks() { for t in /proc/$1/task/*; do echo "$(basename "$t") $(cat "$t/comm" | tr ' ' '_') $(awk '{print $14+$15}' "$t/stat")"; done; }
modes=" ${MODES:-tcp udp} "
if [[ $modes == *" tcp "* ]]; then
  thread_ticks "${pids[0]}" > "$WORK/ta0"; thread_ticks "${pids[1]}" > "$WORK/tb0"
  started=$(date +%s.%N)
  MODES=tcp iperf_series sluice "$NS_A" "$NS_B" "$IN_B" "$IN_A" "${pids[0]}" "${pids[1]}"
  thread_ticks "${pids[0]}" > "$WORK/ta1"; thread_ticks "${pids[1]}" > "$WORK/tb1"
  elapsed=$(echo "$(date +%s.%N) - $started" | bc -l)
  echo "CPU per thread over the TCP runs (100% = one core), a = iperf3 client side, b = server side:"
  # The main thread is the one whose tid is the pid; the busy others are the kernel workers
  # (libuv's and V8's helper threads idle at 0-1%).
  for side in a b; do
    pid=${pids[0]}; [[ $side == b ]] && pid=${pids[1]}
    join <(sort "$WORK/t${side}0") <(sort "$WORK/t${side}1") |
      awk -v s="$side" -v hz="$HZ" -v el="$elapsed" -v pid="$pid" '{d=$5-$3; cpu=100*d/hz/el; if (cpu >= 1) printf "THREAD %s tid=%s %s cpu=%.0f%%\n", s, $1, ($1==pid ? "main" : cpu >= 5 ? "worker" : "helper"), cpu}'
  done
fi
if [[ $modes == *" udp "* ]]; then
  MODES=udp iperf_series sluice "$NS_A" "$NS_B" "$IN_B" "$IN_A" "${pids[0]}" "${pids[1]}"
fi
