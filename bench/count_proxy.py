"""A counting HTTP proxy in front of the AWS emulators.

Each listener forwards to one upstream (moto for S3 and SQS, DynamoDB
Local for DynamoDB) and classifies every request the way AWS bills it:

- S3 (path-style): PUT (COPY when x-amz-copy-source is set), GET, HEAD,
  DELETE, LIST, POST (multipart);
- SQS (JSON protocol): the X-Amz-Target operation; for ReceiveMessage
  also the number of messages returned, per queue (a Lambda function is
  invoked per message batch the poller receives);
- DynamoDB: the X-Amz-Target operation, and the capacity units consumed
  (the proxy adds ReturnConsumedCapacity=TOTAL to each request; DynamoDB
  Local does not check signatures).

GET /__counts on any listener returns the counters as JSON; POST
/__reset zeroes them.
"""

import http.client
import http.server
import json
import threading
from collections import Counter

LOCK = threading.Lock()
COUNTS = Counter()
CAPACITY_OPS = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
    "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems",
}
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-connection", "content-length"}
# BaseHTTPRequestHandler writes its own.
OWN = {"server", "date"}


def count(key, n=1):
    with LOCK:
        COUNTS[key] += n


def snapshot():
    with LOCK:
        return dict(COUNTS)


def reset():
    with LOCK:
        COUNTS.clear()


def classify_s3(method, path, headers):
    p, _, query = path.partition("?")
    parts = [x for x in p.split("/") if x]
    if method == "PUT":
        if len(parts) < 2:
            return "s3.PUT-bucket"
        return "s3.COPY" if "x-amz-copy-source" in headers else "s3.PUT"
    if method == "GET":
        if len(parts) < 2:
            return "s3.LIST"
        return "s3.GET"
    if method in ("HEAD", "DELETE", "POST"):
        return "s3." + method
    return "s3.other-" + method


def units(cc):
    """Sum CapacityUnits (or read+write) of a ConsumedCapacity value."""
    if isinstance(cc, list):
        return [u for c in cc for u in units(c)]
    if not isinstance(cc, dict):
        return []
    out = []
    if "ReadCapacityUnits" in cc:
        out.append(("read", cc["ReadCapacityUnits"]))
    if "WriteCapacityUnits" in cc:
        out.append(("write", cc["WriteCapacityUnits"]))
    if not out and "CapacityUnits" in cc:
        out.append(("any", cc["CapacityUnits"]))
    return out


def handler_for(upstream_host, upstream_port, kind):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def reply(self, status, data, headers=()):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def forward(self):
            if self.path == "/__counts":
                return self.reply(200, json.dumps(snapshot()).encode(),
                                  [("Content-Type", "application/json")])
            if self.path == "/__reset":
                reset()
                return self.reply(200, b"{}")
            data = self.body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            target = headers.get("x-amz-target", "")
            op = target.rsplit(".", 1)[-1] if target else ""
            req = None
            if kind == "ddb":
                count("ddb." + op)
                if op in CAPACITY_OPS and data:
                    req = json.loads(data)
                    req["ReturnConsumedCapacity"] = "TOTAL"
                    data = json.dumps(req).encode()
            elif op:
                count("sqs." + op)
                if op in ("ReceiveMessage", "SendMessage", "SendMessageBatch", "DeleteMessage",
                          "DeleteMessageBatch") and data:
                    req = json.loads(data)
            else:
                count(classify_s3(self.command, self.path, headers))
            out = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            out["Content-Length"] = str(len(data))
            conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=120)
            conn.request(self.command, self.path, body=data, headers=out)
            resp = conn.getresponse()
            payload = resp.read()
            conn.close()
            if kind == "ddb" and resp.status == 200 and req is not None:
                try:
                    got = json.loads(payload)
                    for which, u in units(got.get("ConsumedCapacity")):
                        if which == "any":  # DynamoDB Local reports only the total
                            which = "write" if op in WRITE_OPS else "read"
                        count(f"ddb.{which}_units", u)
                except ValueError:
                    pass
            if kind == "aws" and req is not None and resp.status == 200:
                queue = req.get("QueueUrl", "").rsplit("/", 1)[-1]
                if op == "ReceiveMessage":
                    try:
                        n = len(json.loads(payload).get("Messages", []))
                    except ValueError:
                        n = 0
                    count(f"sqs.received.{queue}", n)
                    if n:
                        count(f"sqs.receives_with_messages.{queue}")
                elif op == "SendMessage":
                    count(f"sqs.sent.{queue}")
                elif op == "SendMessageBatch":
                    count(f"sqs.sent.{queue}", len(req.get("Entries", [])))
            hdrs = [(k, v) for k, v in resp.getheaders()
                    if k.lower() not in HOP and k.lower() not in OWN]
            self.send_response(resp.status)
            for k, v in hdrs:
                self.send_header(k, v)
            if self.command == "HEAD":
                self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
                self.end_headers()
            else:
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    return Handler


def serve(listen_port, upstream_port, kind):
    """Starts one listener in a daemon thread; returns the server."""
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", listen_port), handler_for("127.0.0.1", upstream_port, kind))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv
