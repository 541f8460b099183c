#!/usr/bin/env bash
# Proves the kernel programs on a real Debian 6.1 kernel other than this machine's:
# `cross/vm.sh arm64` boots Debian's arm64 kernel under qemu-system-aarch64, `cross/vm.sh
# x86_64` Debian's amd64 kernel under qemu-system-x86_64 (both emulated), each with a tiny
# initramfs holding the static musl telegen and busybox. It loads and attaches every
# program, makes TCP connections and HTTP requests (cross/vm/httpd.rs and busybox wget)
# inside the guest, and reads the agent's console output back from the serial port. Both
# transports (ring buffer and perf buffers) run, with the descriptor join that Linux 6.1
# gets for request tracing; a third run asks for the socket join of 6.4+, which this kernel
# cannot give: it still shows every program to the verifier. Needs the musl build of that
# architecture (cross/cross.sh). Fetches what it needs from Debian once, into
# ~/.cache/telegen/ARCH.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:?usage: cross/vm.sh arm64|x86_64}
case "$ARCH" in
  arm64)
    TARGET=aarch64-unknown-linux-musl DEB_ARCH=arm64 QEMU=qemu-system-aarch64 QEMU_PKG=qemu-system-arm
    KERNEL_PKG=linux-image-arm64 CONSOLE=ttyAMA0
    MACHINE=(-M virt -cpu cortex-a57)
    ACCEL=TCG
    ;;
  x86_64)
    TARGET=x86_64-unknown-linux-musl DEB_ARCH=amd64 QEMU=qemu-system-x86_64 QEMU_PKG=qemu-system-x86
    KERNEL_PKG=linux-image-amd64 CONSOLE=ttyS0
    # Software emulation here too: this machine's /dev/kvm (nested) fails `-cpu host` on an
    # MSR and hangs other CPU models after the kernel's decompression.
    MACHINE=(-M q35 -cpu max)
    ACCEL=TCG
    ;;
  *) echo "cross/vm.sh: no guest for $ARCH (arm64 or x86_64)"; exit 2 ;;
esac
CACHE="$HOME/.cache/telegen/$ARCH"
BIN=target/$TARGET/release/telegen.stripped
[ -x "$BIN" ] || { echo "build the $TARGET binary first (cross/cross.sh)"; exit 1; }
mkdir -p "$CACHE"

if ! command -v "$QEMU" >/dev/null || ! command -v cpio >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$QEMU_PKG" cpio >/dev/null
fi
if [ ! -f "$CACHE/Image" ] || [ ! -f "$CACHE/busybox" ]; then
  if [ "$DEB_ARCH" != "$(dpkg --print-architecture)" ]; then
    dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH" || { dpkg --add-architecture "$DEB_ARCH"; apt-get update -qq; }
  fi
  kpkg=$(apt-cache depends "$KERNEL_PKG:$DEB_ARCH" | awk '/Depends: linux-image-/ {print $2; exit}')
  (cd "$CACHE" && rm -rf deb && mkdir deb && cd deb && apt-get download "$kpkg:$DEB_ARCH" "busybox-static:$DEB_ARCH" 2>/dev/null)
  rm -rf "$CACHE/x"
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
rustc --edition 2021 -O --target "$TARGET" -C linker=rust-lld \
  -C target-feature=+crt-static cross/vm/httpd.rs -o "$root/bin/vm-httpd"
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
mount -t tracefs tracefs /sys/kernel/tracing
echo "== check"
/telegen check
run() {
  transport=$1; port=$2; join=$3
  echo "== run: $transport $join"
  /telegen --console --transport $transport --capture-join $join --seccomp kill > /tmp/console.txt 2> /tmp/agent.txt &
  agent=$!
  i=0; while ! grep -q "attached tracepoints" /tmp/agent.txt && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
  (for n in 1 2 3; do nc -l -p $port < /dev/null > /dev/null; done) &
  sleep 2
  for n in 1 2 3; do echo hello | nc 127.0.0.1 $port; sleep 1; done
  vm-httpd $((port + 10)) &
  httpd=$!
  sleep 1
  for n in 1 2 3; do wget -q -O /dev/null http://127.0.0.1:$((port + 10))/index.html; sleep 1; done
  kill $httpd
  sleep 2
  # The privileged helper has served the execs above (musl's calls, under its own
  # seccomp list, which kills): still there, a child of the agent.
  for s in /proc/[0-9]*/status; do grep -q "^Name:.telegen-helper" $s 2>/dev/null && echo "== helper alive"; done
  kill -TERM $agent
  wait $agent
  echo "== agent exit $?"
  cat /tmp/agent.txt
  grep -E "telegen.tcp.connections.opened|kernel_ring_full|socket_unknown|telegen.agent.events|^span " /tmp/console.txt
}
run ring 8080 auto
run perf 8081 auto
run ring 8082 socket
echo "== done"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$CACHE/initrd.gz"

echo "booting $(cat "$CACHE/kernel-version") under $QEMU ($ACCEL)"
log="$CACHE/console.log"
timeout "${TELEGEN_VM_SECONDS:-600}" "$QEMU" "${MACHINE[@]}" -smp 2 -m 512 \
  -nographic -no-reboot -nic none -kernel "$CACHE/Image" -initrd "$CACHE/initrd.gz" \
  -append "console=$CONSOLE rdinit=/init quiet panic=-1" > "$log" 2>&1 || true
tr -d '\r' < "$log" | sed -n '/== uname/,/== done/p'

# The verdict: every program attached, the connections counted, a clean exit.
clean=$(tr -d '\r' < "$log")
fail() { echo "$ARCH VM: $*"; exit 1; }
grep -q "== uname: $(sed 's/arm64/aarch64/' <<<"$ARCH") " <<<"$clean" || fail "the guest did not start its init"
attached() { grep -E "attached tracepoints: inet_sock_set_state, tcp_retransmit_skb, tcp_send_reset, tcp_receive_reset$1 \(records through $2\)" <<<"$clean"; }
# Linux 6.1 lacks sock:sock_{send,recv}_length: request tracing joins calls to sockets by
# descriptor, with every capture program attached.
capture=", sys_enter_read, .*, sys_enter_close, sched_process_exec, sched_process_exit, sys_enter_connect, tcp_rcv_space_adjust"
attached "$capture" "ring buffer" >/dev/null || fail "not every program attached (ring buffer)"
attached "$capture" "perf buffers" >/dev/null || fail "not every program attached (perf buffers)"
grep -q "HTTP request tracing *descriptor join" <<<"$clean" || fail "check did not name the descriptor join"
[ "$(grep -c "request tracing joins calls to sockets by the descriptor join" <<<"$clean")" = 2 ] \
  || fail "the descriptor join was not taken twice"
! grep -q "are not seen: spans and request metrics are incomplete" <<<"$clean" \
  || fail "a capture program did not attach"
[ "$(grep -c "== agent exit 0" <<<"$clean")" = 3 ] || fail "the agent did not exit 0 three times"
# Every run under the seccomp filter (that architecture's musl system calls): a call outside its list
# would have killed the agent (exit 159, SIGSYS) instead of the clean exits above.
[ "$(grep -c "seccomp filter installed (Kill)" <<<"$clean")" = 3 ] || fail "no seccomp filter"
# The privileged helper, forked in both request-tracing runs, survived its requests.
[ "$(grep -c "privileged helper started" <<<"$clean")" = 2 ] || fail "no privileged helper"
[ "$(grep -c "== helper alive" <<<"$clean")" = 2 ] || fail "the privileged helper died"
! grep -q "the privileged helper .*going on" <<<"$clean" || fail "the privileged helper ended"
# The socket join asked for where it cannot be: request tracing is off, TCP metrics stay,
# and every request-tracing program (both joins') is still shown to the guest's verifier.
attached "" "ring buffer" >/dev/null || fail "the socket-join run attached more than TCP metrics"
grep -q "no request tracing: the socket join needs the tracepoints sock:sock_send_length" <<<"$clean" \
  || fail "the missing socket-join tracepoints were not reported"
grep -q "(34 of its 34 programs pass this kernel's verifier)" <<<"$clean" \
  || fail "a request-tracing program did not pass the guest's verifier"
! grep -q "verifier refused" <<<"$clean" || fail "the verifier refused a program"
# The HTTP requests, both ends, in each descriptor-join run (6 of each).
server=$(grep -c "^span SERVER GET /index.html 200 .* vm-httpd\[" <<<"$clean" || true)
client=$(grep -c "^span CLIENT GET /index.html 200 .* wget\[" <<<"$clean" || true)
[ "$server" = 6 ] && [ "$client" = 6 ] \
  || fail "HTTP: expected 6 server and 6 client spans, got $server and $client"
# busybox nc listens dual-stack and each listener is its own process: sum the series.
sum() { grep -E "connections.opened\\{server.address=\"127.0.0.1\",server.port=$2,network.transport=\"tcp\",network.type=\"ipv4\",telegen.connection.side=\"$1\"" <<<"$clean" | awk '{s += $NF} END {print s + 0}'; }
for port in 8080 8081 8082; do
  server=$(sum server $port)
  client=$(sum client $port)
  [ "$server" = 3 ] && [ "$client" = 3 ] || fail "port $port: expected 3 server and 3 client ends, got $server and $client"
done
echo "$ARCH VM: ok"
