"""A cloud instance metadata service on loopback, for the tests.

Usage: metadata_server.py PROVIDER BEHAVIOUR

PROVIDER: aws, gcp or azure: the paths and headers of that provider's service are answered
(with the bodies in metadata/), everything else is 404, as another provider's requests would
be. BEHAVIOUR: ok; slow (answers after 5 s); error (500 to everything); malformed (the right
paths answer 200 with a body cut in half). Requests that lack the provider's required header
get the status its documentation gives (AWS 401 without a token, GCP 403, Azure 400).
Prints its port, then one line per request it answered: METHOD PATH STATUS.
"""

import http.server
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).parent / "metadata"
PROVIDER, BEHAVIOUR = sys.argv[1], sys.argv[2]
TOKEN = "AQAEAGl0LXRva2VuLWZvci10ZXN0cw=="
BODIES = {
    "aws": (HERE / "aws-identity.json").read_bytes(),
    "gcp": (HERE / "gcp-recursive.json").read_bytes(),
    "azure": (HERE / "azure-compute.json").read_bytes(),
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        if BEHAVIOUR == "slow":
            time.sleep(5)
        if BEHAVIOUR == "error":
            status, body = 500, b"internal error"
        if BEHAVIOUR == "malformed" and status == 200 and self.path != "/latest/api/token":
            body = body[: len(body) // 2]
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"{self.command} {self.path} {status}", flush=True)

    def route(self):
        p, h = self.path, self.headers
        if PROVIDER == "aws" and self.command == "PUT" and p == "/latest/api/token":
            if not h.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self.answer(400)
            return self.answer(200, TOKEN.encode())
        if PROVIDER == "aws" and p == "/latest/dynamic/instance-identity/document":
            if h.get("X-aws-ec2-metadata-token") != TOKEN:
                return self.answer(401)
            return self.answer(200, BODIES["aws"], [("Content-Type", "text/plain")])
        if PROVIDER == "gcp" and p == "/computeMetadata/v1/?recursive=true":
            if h.get("Metadata-Flavor") != "Google":
                return self.answer(403)
            return self.answer(200, BODIES["gcp"], [("Metadata-Flavor", "Google")])
        if PROVIDER == "azure" and p.startswith("/metadata/instance/compute?api-version="):
            if h.get("Metadata") != "true":
                return self.answer(400)
            return self.answer(200, BODIES["azure"], [("Content-Type", "application/json")])
        return self.answer(404, b"not found")

    do_GET = route
    do_PUT = route


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
