# Raw connections to a listener that expects the PROXY protocol v2: one
# without a header (refused: closed, no answer), one relayed for
# 203.0.113.7:4242, one LOCAL (the balancer's own). Prints one line each.
# argv: gateway url.
import socket, struct, sys, urllib.parse, boto3
from botocore.config import Config
url = sys.argv[1]
s3 = boto3.client("s3", endpoint_url=url, config=Config(signature_version="s3v4"))
signed = urllib.parse.urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "nope"}))
host, port = signed.hostname, signed.port
request = ("GET %s?%s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (signed.path, signed.query, host, port)).encode()
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def exchange(prefix):
    with socket.create_connection((host, port), timeout=10) as c:
        c.sendall(prefix + request)
        data = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    return data.split(b"\r\n", 1)[0].decode() or "closed"


proxied = SIG + bytes([0x21, 0x11]) + struct.pack(">H", 12) + socket.inet_aton("203.0.113.7") \
    + socket.inet_aton("127.0.0.1") + struct.pack(">HH", 4242, port)
local = SIG + bytes([0x20, 0x00]) + struct.pack(">H", 0)
for prefix in (b"", proxied, local):
    print(exchange(prefix))
