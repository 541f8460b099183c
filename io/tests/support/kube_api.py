"""A Kubernetes API server's pod listing on loopback, over TLS, for the tests.

Usage: kube_api.py CERT KEY TOKEN BEHAVIOUR

Answers GET /api/v1/pods?fieldSelector=spec.nodeName%3Dedge-1&limit=N with the pages in
kubernetes/ (page 1 names page 2 in metadata.continue), as the API reference describes
pagination. A request without `Authorization: Bearer TOKEN` gets 401 and a Status, as the
API server answers. BEHAVIOUR: ok; forbidden (403 to every listing, as without the RBAC
rule); garbage (200 with a body that is not JSON). Prints its port, then one line per
request: PATH STATUS.
"""

import http.server
import json
import pathlib
import ssl
import sys
import urllib.parse

HERE = pathlib.Path(__file__).parent / "kubernetes"
CERT, KEY, TOKEN, BEHAVIOUR = sys.argv[1:5]
PAGES = [(HERE / f"pods-page-{i}.json").read_bytes() for i in (1, 2)]
CONTINUE = json.loads(PAGES[0])["metadata"]["continue"]


def status(code, reason):
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "reason": reason, "code": code}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"{self.path} {code}", flush=True)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.answer(401, status(401, "Unauthorized"))
        if url.path != "/api/v1/pods" or q.get("fieldSelector") != ["spec.nodeName=edge-1"]:
            return self.answer(404, status(404, "NotFound"))
        if BEHAVIOUR == "forbidden":
            return self.answer(403, status(403, "Forbidden"))
        if BEHAVIOUR == "garbage":
            return self.answer(200, b"<html>proxy error</html>")
        if q.get("continue") == [CONTINUE]:
            return self.answer(200, PAGES[1])
        return self.answer(200, PAGES[0])


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
