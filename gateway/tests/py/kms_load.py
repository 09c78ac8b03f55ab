# Many small objects through the gateway. argv: gateway url, put|get, bucket, count.
import sys, boto3
from botocore.config import Config
gw = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
op, bucket, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(n):
    body = b"object %d " % i * 20
    if op == "put":
        gw.put_object(Bucket=bucket, Key="o%d" % i, Body=body)
    elif gw.get_object(Bucket=bucket, Key="o%d" % i)["Body"].read() != body:
        raise SystemExit("o%d read back wrong" % i)
print("ok")
