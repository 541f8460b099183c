#!/usr/bin/env bash
# The whole test suite, from a fresh machine: bootstrap, lint, build, fuzz briefly, test.
# Run as root (the integration tests load eBPF programs). `.ci/run` calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step bootstrap
bash cross/bootstrap.sh

step "format and lints"
cargo fmt --all --check
cargo clippy --release --all-targets -- -D warnings

step "build (user space and the embedded eBPF object)"
cargo build --release

step "fuzz each target briefly (${TELEGEN_FUZZ_SECONDS:=20} s each)"
for target in record_decoder http_response tracefs_format spool_scan http_exchanges redis_exchanges mqtt_exchanges \
    postgres_exchanges mysql_exchanges amqp_exchanges kafka_exchanges dns_exchanges program_file cloud_metadata k8s_pod_list \
    http2_exchanges hpack_blocks container_state helper_messages; do
  mkdir -p "fuzz/corpus/$target"
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]/#fuzz\//}" -- \
      -max_total_time="$TELEGEN_FUZZ_SECONDS" -print_final_stats=1 2>&1 | tail -n 3)
done

step "cross: static aarch64/armv7/x86_64 builds, their tests under qemu-user, sizes"
bash cross/cross.sh

step "arm64: every program on Debian's arm64 kernel under qemu-system-aarch64"
timeout 900 bash cross/vm.sh arm64

step "x86_64: every program on Debian's amd64 kernel (6.1) under qemu-system-x86_64"
timeout 600 bash cross/vm.sh x86_64

step "packaging: systemd unit, Kubernetes manifest, Helm chart, multi-arch image"
"$HOME/.cache/telegen/venv/bin/python" cross/packaging/validate.py "$PWD/target/release/telegen"
bash cross/image.sh

step "tests: unit, integration on the real kernel, end to end with the official OTLP decoder"
cargo nextest run --release --no-fail-fast

step "tests: the L7 end-to-end files again, with the descriptor join of kernels before 6.4"
TELEGEN_TEST_CAPTURE_JOIN=descriptor cargo nextest run --release --no-fail-fast \
  -E 'binary(http_e2e) | binary(http2_e2e) | binary(db_e2e) | binary(messaging_e2e)'

step "tests: the held writes of an older connection, alone (no test alongside adds to socket_unknown)"
TELEGEN_TEST_ALONE=1 TELEGEN_TEST_CAPTURE_JOIN=descriptor cargo nextest run --release --no-fail-fast \
  -E 'test(a_keep_alive_connection_older_than_the_agent_is_traced_from_its_next_request)'
