#!/usr/bin/env bash
# Proves the kernel programs on a real arm64 kernel: boots Debian's arm64 kernel under
# qemu-system-aarch64 (software emulation) with a tiny initramfs holding the static aarch64
# telegen and busybox, loads and attaches every program, makes TCP connections inside the
# guest, and reads the agent's console output back from the serial port. Both transports
# (ring buffer and perf buffers) run.
# Needs the aarch64 build (cross/cross.sh). Fetches what it needs from Debian once, into
# ~/.cache/telegen/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="$HOME/.cache/telegen/arm64"
KERNEL_PKG=linux-image-arm64
BIN=target/aarch64-unknown-linux-musl/release/telegen.stripped
[ -x "$BIN" ] || { echo "build the aarch64 binary first (cross/cross.sh)"; exit 1; }
mkdir -p "$CACHE"

if ! command -v qemu-system-aarch64 >/dev/null || ! command -v cpio >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-arm cpio >/dev/null
fi
if [ ! -f "$CACHE/Image" ] || [ ! -f "$CACHE/busybox" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
  kpkg=$(apt-cache depends "$KERNEL_PKG:arm64" | awk '/Depends: linux-image-/ {print $2; exit}')
  (cd "$CACHE" && rm -rf deb && mkdir deb && cd deb && apt-get download "$kpkg" busybox-static:arm64 2>/dev/null)
  for d in "$CACHE"/deb/*.deb; do dpkg-deb -x "$d" "$CACHE/x"; done
  cp "$CACHE"/x/boot/vmlinuz-* "$CACHE/Image"
  cp "$CACHE/x/bin/busybox" "$CACHE/busybox"
  basename "$(ls "$CACHE"/x/boot/vmlinuz-*)" > "$CACHE/kernel-version"
  rm -rf "$CACHE/x" "$CACHE/deb"
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc}
cp "$CACHE/busybox" "$root/bin/busybox"
cp "$BIN" "$root/telegen"
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$root/etc/passwd"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
ip link set lo up
echo "== uname: $(uname -m) $(uname -r)"
echo "== check"
/telegen check
run() {
  transport=$1; port=$2
  echo "== run: $transport"
  /telegen --console --transport $transport --seccomp kill > /tmp/console.txt 2> /tmp/agent.txt &
  agent=$!
  i=0; while ! grep -q "attached tracepoints" /tmp/agent.txt && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
  (for n in 1 2 3; do nc -l -p $port < /dev/null > /dev/null; done) &
  sleep 2
  for n in 1 2 3; do echo hello | nc 127.0.0.1 $port; sleep 1; done
  sleep 2
  kill -TERM $agent
  wait $agent
  echo "== agent exit $?"
  cat /tmp/agent.txt
  grep -E "telegen.tcp.connections.opened|kernel_ring_full|telegen.agent.events" /tmp/console.txt
}
run ring 8080
run perf 8081
echo "== done"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$CACHE/initrd.gz"

echo "booting $(cat "$CACHE/kernel-version") under qemu-system-aarch64 (TCG)"
log="$CACHE/console.log"
timeout "${TELEGEN_VM_SECONDS:-600}" qemu-system-aarch64 -M virt -cpu cortex-a57 -smp 2 -m 512 \
  -nographic -no-reboot -nic none -kernel "$CACHE/Image" -initrd "$CACHE/initrd.gz" \
  -append "console=ttyAMA0 rdinit=/init quiet panic=-1" > "$log" 2>&1 || true
tr -d '\r' < "$log" | sed -n '/== uname/,/== done/p'

# The verdict: every program attached on arm64, the connections counted, a clean exit.
clean=$(tr -d '\r' < "$log")
fail() { echo "arm64 VM: $*"; exit 1; }
for t in "ring buffer" "perf buffers"; do
  grep -q "attached tracepoints: inet_sock_set_state, tcp_retransmit_skb, tcp_send_reset, tcp_receive_reset (records through $t)" <<<"$clean" \
    || fail "not every program attached ($t)"
done
[ "$(grep -c "== agent exit 0" <<<"$clean")" = 2 ] || fail "the agent did not exit 0 twice"
# Both runs under the seccomp filter (aarch64 musl's system calls): a call outside its list
# would have killed the agent (exit 159, SIGSYS) instead of the clean exits above.
[ "$(grep -c "seccomp filter installed (Kill)" <<<"$clean")" = 2 ] || fail "no seccomp filter"
# Linux 6.1 lacks sock:sock_{send,recv}_length: request tracing is off, said once per run,
# and no syscall program is attached for nothing (the lists above would show them).
[ "$(grep -c "no request tracing: it needs the tracepoints sock:sock_send_length" <<<"$clean")" = 2 ] \
  || fail "the missing request-tracing tracepoints were not reported"
# Those programs are still shown to the arm64 verifier (loaded, not attached): all must pass.
[ "$(grep -c "(32 of its 32 programs pass this kernel's verifier)" <<<"$clean")" = 2 ] \
  || fail "a request-tracing program did not pass the arm64 verifier"
! grep -q "verifier refused" <<<"$clean" || fail "the verifier refused a program"
# busybox nc listens dual-stack and each listener is its own process: sum the series.
sum() { grep -E "connections.opened\\{server.address=\"127.0.0.1\",server.port=$2,network.transport=\"tcp\",network.type=\"ipv4\",telegen.connection.side=\"$1\"" <<<"$clean" | awk '{s += $NF} END {print s + 0}'; }
for port in 8080 8081; do
  server=$(sum server $port)
  client=$(sum client $port)
  [ "$server" = 3 ] && [ "$client" = 3 ] || fail "port $port: expected 3 server and 3 client ends, got $server and $client"
done
echo "arm64 VM: ok"
