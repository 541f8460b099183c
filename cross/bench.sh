#!/usr/bin/env bash
# Runs every benchmark and prints their tables, headed by the machine they ran on.
# As root: cross/bench.sh   (TELEGEN_BENCH_OUTAGE_SECS=10 for a short outage run)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
quiet() { grep -v -e '^\[agent\]' -e 'telegen@' -e '^ *Compiling' -e '^ *Running' -e '^ *Finished' || true; }

echo "# telegen benchmarks, $(date -u +%Y-%m-%d)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), Linux $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo
echo "## User-space pipeline (decode, track, aggregate; encode and gzip per export)"
# Real kernel records to replay: nginx under curl and a keep-alive client, recorded now.
bash cross/record.sh target/bench/nginx.rec 2>&1 | grep '^recording:' || true
cargo bench -q -p telegen-export --bench pipeline 2>&1 | quiet
echo
echo "## Span export: telegen against the OpenTelemetry Rust SDK's OTLP exporter"
cargo bench -q -p telegen-export --bench sdk_compare 2>&1 | quiet
echo
echo "## Footprint under 3000 real TCP connections"
cargo bench -q -p telegen --bench tcp_footprint 2>&1 | quiet
echo
echo "## Collector outage under heavy traffic"
cargo bench -q -p telegen --bench export_outage 2>&1 | quiet
echo
echo "## HTTP request tracing: nginx under wrk, without and with the agent"
cargo bench -q -p telegen --bench http_overhead 2>&1 | quiet
echo
echo "## Kernel time per request: each capture join, and the floor of empty programs"
cargo bench -q -p telegen --bench kernel_cost 2>&1 | quiet
