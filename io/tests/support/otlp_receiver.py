#!/usr/bin/env python3
"""An OTLP/HTTP receiver for telegen's tests, decoding with the official opentelemetry-proto.

Usage: otlp_receiver.py PORT OUT [--script FILE] [--tls CERT KEY] [--client-ca CA]

Listens on 127.0.0.1 (port 0 picks one), prints the port on its first line of stdout, and
appends one JSON line per request to OUT:
  {"t", "path", "content_type", "content_encoding", "bytes", "action", "request": <decoded>}
A body that does not gunzip or decode is answered 400 and recorded with "error".
Each connection is served by its own thread.

--script FILE: a JSON list of faults, one consumed per request (then plain 200s):
  {"status": 503, "retry_after": "2"}   answer that status (optionally with Retry-After)
  {"status": 400, "message": "why"}     an error with a google.rpc.Status body
  {"partial": 3, "message": "why"}      200 with partial_success rejecting 3 items
  {"stall": 3.0}                         send the response one byte every 0.5 s for 3 s, then close
  {"reset": true}                        send half a status line, then reset the connection
  {"garbage": true}                      answer bytes that are not HTTP, then close
--tls CERT KEY: serve https; --client-ca CA: and require a client certificate signed by CA.
"""
import gzip
import json
import socket
import ssl
import struct
import sys
import time
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

SERVICES = {
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest,
                    metrics_service_pb2.ExportMetricsServiceResponse, "rejected_data_points"),
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest,
                   trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest,
                 logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
}


def rpc_status(code, message):
    """google.rpc.Status{code, message} in protobuf wire format."""
    msg = message.encode()
    return bytes([0x08, code]) + bytes([0x12]) + encode_varint(len(msg)) + msg


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="application/x-protobuf", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        action = self.server.script.pop(0) if self.server.script else {}
        ctype = self.headers.get("Content-Type")
        record = {
            "t": time.time(),
            "path": self.path,
            "content_type": ctype,
            "content_encoding": self.headers.get("Content-Encoding"),
            "bytes": len(raw),
            "action": action,
        }
        service = SERVICES.get(self.path)
        status, answer = 200, b""
        try:
            if service is None:
                raise ValueError(f"unknown path {self.path}")
            body = gzip.decompress(raw) if record["content_encoding"] == "gzip" else raw
            req = service[0]()
            if ctype == "application/json":
                json_format.Parse(body, req)
            else:
                req.ParseFromString(body)
            record["request"] = json_format.MessageToDict(req)
            resp = service[1]()
            if "partial" in action:
                setattr(resp.partial_success, service[2], action["partial"])
                resp.partial_success.error_message = action.get("message", "")
            if ctype == "application/json":
                answer = json_format.MessageToJson(resp).encode()
            else:
                answer = resp.SerializeToString()
        except Exception as e:  # recorded, answered 400
            record["error"] = repr(e)
            status, answer = 400, b""
        with self.server.lock, open(self.server.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.act(action, status, answer, ctype)

    def act(self, action, status, answer, ctype):
        sock = self.connection
        if "stall" in action:
            data = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            end = time.time() + action["stall"]
            for b in data:
                if time.time() > end:
                    break
                sock.sendall(bytes([b]))
                time.sleep(0.5)
            self.close_connection = True
        elif action.get("reset"):
            sock.sendall(b"HTTP/1.1 2")
            # Close with linger 0 now (before the server's orderly shutdown): a RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            self.close_connection = True
        elif action.get("garbage"):
            sock.sendall(b"\x00\x01 this is not HTTP at all \xff\r\n\r\n")
            self.close_connection = True
        elif "status" in action:
            extra = [("Retry-After", action["retry_after"])] if "retry_after" in action else []
            body = rpc_status(3, action["message"]) if "message" in action else b""
            self.reply(action["status"], body, extra=extra)
        else:
            resp_type = "application/json" if ctype == "application/json" else "application/x-protobuf"
            self.reply(status, answer, content_type=resp_type)


def main():
    args = sys.argv[1:]
    port, out = int(args[0]), args[1]
    script, tls, client_ca = [], None, None
    i = 2
    while i < len(args):
        if args[i] == "--script":
            with open(args[i + 1]) as f:
                script = json.load(f)
            i += 2
        elif args[i] == "--tls":
            tls = (args[i + 1], args[i + 2])
            i += 3
        elif args[i] == "--client-ca":
            client_ca = args[i + 1]
            i += 2
        else:
            raise SystemExit(f"unknown argument {args[i]}")
    # One thread per connection: a stalled answer must not hold up the agent's next attempt.
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.out, server.script, server.lock = out, script, threading.Lock()
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
