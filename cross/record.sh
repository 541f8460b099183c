#!/usr/bin/env bash
# Records real kernel records for the pipeline benchmark: nginx (one worker) on loopback,
# driven by curl (a connection per request) and by a keep-alive Python client, with
# 200, 404 and 500 answers and a static file sent with sendfile, while the agent runs with
# `--record`. As root: cross/record.sh [OUT]   (default target/bench/nginx.rec)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
out="${1:-target/bench/nginx.rec}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cargo build -q --release -p telegen

dir="$(mktemp -d /tmp/telegen-record.XXXXXX)"
chmod a+rx "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/tmp"
python3 -c 'print("<html>static body</html>\n" * 200, end="")' >"$dir/file.html"
chmod a+r "$dir/file.html"
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    sendfile on;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location = /ok { return 200 "ok\n"; }
        location /users/ { return 200 "{\"name\":\"x\"}\n"; }
        location /missing/ { return 404; }
        location = /boom { return 500; }
        location = /file { alias $dir/file.html; }
    }
}
CONF
nginx -c "$dir/nginx.conf" -p "$dir" 2>/dev/null &
nginx_pid=$!
agent_pid=""
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    kill "$nginx_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/ok" && break
    sleep 0.05
done

# The agent prints every span on stdout (--console) so that it keeps them, as it would when
# exporting; nothing is sent anywhere.
target/release/telegen --console --cloud-metadata off --record "$out" >/dev/null 2>"$dir/agent.log" &
agent_pid=$!
for _ in $(seq 200); do
    grep -q "attached tracepoints" "$dir/agent.log" && break
    kill -0 "$agent_pid" || { cat "$dir/agent.log"; exit 1; }
    sleep 0.1
done
grep -q "attached tracepoints" "$dir/agent.log" || { cat "$dir/agent.log"; exit 1; }

base="http://127.0.0.1:$port"
for i in $(seq 40); do
    curl -s -o /dev/null "$base/ok"
    curl -s -o /dev/null "$base/users/$((1000 + i))"
    curl -s -o /dev/null "$base/missing/$i"
    curl -s -o /dev/null "$base/file"
    [ $((i % 4)) -eq 0 ] && curl -s -o /dev/null "$base/boom"
done
python3 - "$port" <<'PY'
import http.client, sys
port = int(sys.argv[1])
paths = ["/ok", "/users/4711", "/file", "/ok", "/missing/7", "/users/12", "/ok", "/boom"]
conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(4)]
for i in range(2000):
    c = conns[i % 4]
    c.request("GET", paths[i % len(paths)], headers={"User-Agent": "bench/1.0", "Accept": "*/*"})
    r = c.getresponse()
    r.read()
for c in conns:
    c.close()
PY
sleep 0.5
kill -TERM "$agent_pid"
wait "$agent_pid" || true
agent_pid=""
grep -E "recorded|recording" "$dir/agent.log" >&2 || true
echo "recording: $out ($(stat -c %s "$out") bytes)" >&2
