#!/usr/bin/env bash
# Static builds for the edge targets, their sans-IO test suites under qemu-user, a start-up
# check of each binary, and a size report. Called by cross/test.sh; needs cross/bootstrap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# target, strip tool, nm tool, qemu runner ("" = native)
TARGETS=(
  "aarch64-unknown-linux-musl aarch64-linux-gnu-strip aarch64-linux-gnu-nm qemu-aarch64-static"
  "armv7-unknown-linux-gnueabihf arm-linux-gnueabihf-strip arm-linux-gnueabihf-nm qemu-arm-static"
  "x86_64-unknown-linux-musl strip nm"
)
SIZE_BUDGET_AARCH64=$((4 * 1024 * 1024))
report=target/cross-sizes.md
printf '| target | stripped bytes | MiB |\n|---|---|---|\n' > "$report"

for line in "${TARGETS[@]}"; do
  read -r target strip nm runner <<<"$line"
  echo "== $target: build"
  cargo build --release --target "$target"
  bin="target/$target/release/telegen"
  file "$bin" | grep -q "statically linked\|static-pie linked" || { echo "$bin is not static"; exit 1; }
  stripped="target/$target/release/telegen.stripped"
  cp "$bin" "$stripped"
  "$strip" "$stripped"
  size=$(stat -c %s "$stripped")
  printf '| %s | %s | %.2f |\n' "$target" "$size" "$(echo "$size / 1048576" | bc -l)" >> "$report"
  if [ "$target" = aarch64-unknown-linux-musl ] && [ "$size" -gt "$SIZE_BUDGET_AARCH64" ]; then
    echo "aarch64 binary is $size bytes, over the 4 MiB budget"; exit 1
  fi
  if [ -n "${runner:-}" ]; then
    echo "== $target: core, export and config tests under $runner"
    cargo test --release --target "$target" -p telegen-core -p telegen-export -p telegen-config --lib --tests
    echo "== $target: the binary starts, and check explains that bpf() is unavailable"
    "$runner" "$bin" --version | grep -q "^telegen "
    set +e
    out=$("$runner" "$bin" check 2>&1); rc=$?
    set -e
    [ "$rc" -eq 1 ] || { echo "check under emulation exited $rc, expected 1"; echo "$out"; exit 1; }
    echo "$out" | grep -q "bpf() syscall is not implemented here" || { echo "$out"; exit 1; }
  fi
  # Staged for the multi-arch image (cross/packaging/Containerfile: TARGETARCH + TARGETVARIANT).
  case "$target" in
    aarch64-*) arch=arm64 ;; armv7-*) arch=armv7 ;; x86_64-*) arch=amd64 ;;
  esac
  mkdir -p "target/image/$arch"
  cp "$stripped" "target/image/$arch/telegen"
  if [ "$target" = aarch64-unknown-linux-musl ]; then
    python3 cross/size_report.py "$nm" "$bin" 12 > target/cross-contributors.md
  fi
done
echo "== sizes"
cat "$report"
echo "== largest contributors (aarch64, by crate)"
cat target/cross-contributors.md
