# A counting front for a KMS endpoint: forwards every request to the KMS at
# argv[2] and counts them by operation (X-Amz-Target), so tests count KMS
# calls where KMS sees them. GET /__counts answers the counts as JSON.
# GET /__mode/<mode> makes the KMS fail from then on: `down` (connections
# closed unanswered), `throttle` (ThrottlingException), `slow` (each call
# answered after 15 s), `up` (forwarded again).
# argv: port, upstream url.
import http.client, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

port, upstream = int(sys.argv[1]), urlparse(sys.argv[2])
counts, lock = {}, threading.Lock()
mode = ["up"]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/__mode/"):
            mode[0] = self.path.rsplit("/", 1)[1]
        body = json.dumps(counts).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        op = self.headers.get("x-amz-target", "?").split(".")[-1]
        with lock:
            counts[op] = counts.get(op, 0) + 1
        if mode[0] == "down":
            self.close_connection = True
            self.connection.close()
            return
        if mode[0] == "throttle":
            data = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            self.send_response(400)
            self.send_header("content-type", "application/x-amz-json-1.1")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if mode[0] == "slow":
            time.sleep(15)
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request("POST", self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
