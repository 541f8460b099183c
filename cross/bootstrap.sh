#!/usr/bin/env bash
# Installs every prerequisite telegen needs on a fresh Debian machine of the project's kind.
# Idempotent: each step checks before it acts, so a second run takes seconds.
# Usage: cross/bootstrap.sh            (everything: build, tests, cross targets)
set -euo pipefail

log() { printf 'bootstrap: %s\n' "$*" >&2; }

NIGHTLY=${TELEGEN_NIGHTLY:-nightly}
export PATH="$HOME/.cargo/bin:$PATH"

# --- Debian packages -------------------------------------------------------------------------
# Tools the build, the tests and the benchmarks call. Installed together in one apt run.
DEB_PKGS=(
  build-essential pkg-config iproute2 procps util-linux binutils python3 python3-venv
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross gcc-aarch64-linux-gnu qemu-user-static bc file
  libc6-dev-arm64-cross systemd openssl nginx curl wrk buildah redis-server redis-tools mosquitto mosquitto-clients
  postgresql python3-psycopg mariadb-server mariadb-client libdbd-mariadb-perl dnsmasq bind9-dnsutils
  nghttp2-client bpftool bpftrace qemu-system-arm qemu-system-x86 cpio
  rabbitmq-server golang-go nodejs openjdk-17-jdk-headless
)
missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Servers the tests start themselves: keep the packages from starting them as services.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((own_policy)) && rm -f "$policy"
fi

# --- Rust toolchains -------------------------------------------------------------------------
# The eBPF crate builds with nightly (-Z build-std=core); user space builds with stable.
if ! rustup toolchain list | grep -q "^${NIGHTLY}"; then
  log "rustup toolchain install $NIGHTLY"
  rustup toolchain install "$NIGHTLY" --profile minimal
fi
if ! rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src'; then
  log "rustup component add rust-src ($NIGHTLY)"
  rustup component add rust-src --toolchain "$NIGHTLY"
fi
for t in aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf x86_64-unknown-linux-musl; do
  if ! rustup target list --installed | grep -qx "$t"; then
    log "rustup target add $t"
    rustup target add "$t"
  fi
done

# --- bpf-linker against the nightly toolchain's own LLVM -------------------------------------
# No system LLVM: LLVM_PREFIX/lib holds links to the libLLVM that ships with the nightly.
if ! command -v bpf-linker >/dev/null 2>&1; then
  sysroot=$(rustc "+$NIGHTLY" --print sysroot)
  lib=$(find "$sysroot/lib" -maxdepth 1 -name 'libLLVM.so.*-rust-*' | head -n 1)
  [ -n "$lib" ] || { log "no libLLVM in $sysroot/lib"; exit 1; }
  prefix="$HOME/.cache/telegen/llvm-prefix"
  mkdir -p "$prefix/lib"
  ln -sf "$lib" "$prefix/lib/libLLVM.so"
  ln -sf "$lib" "$prefix/lib/$(basename "$lib")"
  log "cargo install bpf-linker (LLVM_PREFIX=$prefix)"
  LLVM_PREFIX="$prefix" cargo install --locked bpf-linker --version "~0.13" \
    --no-default-features --features llvm-22
fi

# --- cargo-nextest, the test runner (the machine image usually has it) ----------------------
if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi

# --- cargo-fuzz, for the fuzz targets CI runs briefly -----------------------------------------
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "cargo install cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

# --- Python packages for the independent OTLP decoder in the tests --------------------------
VENV="$HOME/.cache/telegen/venv"
if [ ! -x "$VENV/bin/python" ]; then
  log "python3 -m venv $VENV"
  python3 -m venv "$VENV"
fi
# opentelemetry-sdk: an instrumented client for the trace-context test. helm-python-sdk:
# Helm's Go SDK as a library, to render and lint the chart without a helm binary. pika: the
# AMQP client of the RabbitMQ test. kafka-python: the Kafka client of the Kafka test, whose
# broker (io/tests/support/kafka_broker.py) is built on its protocol classes. grpcio: the
# gRPC server and client of the HTTP/2 test.
if ! "$VENV/bin/python" -c 'import opentelemetry.proto.collector.metrics.v1.metrics_service_pb2, opentelemetry.sdk.trace, yaml, kubernetes_validate, helm_python, pika, kafka.protocol.api_message, grpc' 2>/dev/null; then
  log "pip install opentelemetry-proto opentelemetry-sdk pyyaml kubernetes-validate helm-python-sdk pika kafka-python grpcio"
  "$VENV/bin/pip" install -q opentelemetry-proto opentelemetry-sdk pyyaml kubernetes-validate \
    'helm-python-sdk==0.2.2' pika 'kafka-python==3.0.12' 'grpcio==1.85.3'
fi

# --- tracefs --------------------------------------------------------------------------------
if [ ! -e /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || log "could not mount tracefs (not root?)"
fi

log "ready"
