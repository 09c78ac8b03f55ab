# A PUT that stops halfway: headers and half the body, then "started" on
# stdout; the rest once a line arrives on stdin; then the status and body.
# argv: gateway url, bucket, key, size.
import http.client, sys, urllib.parse, boto3
from botocore.config import Config
url, bucket, key, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=url, config=Config(signature_version="s3v4"))
signed = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
parts = urllib.parse.urlsplit(signed)
body = bytes(i % 251 for i in range(size))
conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
conn.putrequest("PUT", parts.path + "?" + parts.query, skip_accept_encoding=True)
conn.putheader("Content-Length", str(size))
conn.endheaders()
conn.send(body[: size // 2])
print("started", flush=True)
sys.stdin.readline()
conn.send(body[size // 2:])
resp = conn.getresponse()
print(resp.status, resp.read().decode(errors="replace"), flush=True)
