#!/usr/bin/env python3
"""An OTLP/HTTP receiver for telegen's tests, decoding with the official opentelemetry-proto.

Listens on 127.0.0.1 (port 0 picks one), prints the port on its first line of stdout, and
appends one JSON line per request to the output file:
  {"path", "content_type", "content_encoding", "bytes", "request": <decoded, as JSON>}
A body that does not gunzip or decode is answered 400 and recorded with "error".
"""
import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

SERVICES = {
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest,
                    metrics_service_pb2.ExportMetricsServiceResponse),
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest,
                   trace_service_pb2.ExportTraceServiceResponse),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest,
                 logs_service_pb2.ExportLogsServiceResponse),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        record = {
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "bytes": len(raw),
        }
        status = 200
        service = SERVICES.get(self.path)
        try:
            if service is None:
                raise ValueError(f"unknown path {self.path}")
            body = gzip.decompress(raw) if record["content_encoding"] == "gzip" else raw
            req = service[0]()
            req.ParseFromString(body)
            record["request"] = MessageToDict(req)
            answer = service[1]().SerializeToString()
        except Exception as e:  # recorded, answered 400
            record["error"] = repr(e)
            status, answer = 400, b""
        with open(self.server.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.reply(status, answer)


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    server = HTTPServer(("127.0.0.1", port), Handler)
    server.out = out
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
