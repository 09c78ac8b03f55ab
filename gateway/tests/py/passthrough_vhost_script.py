import sys, http.client
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
port = int(sys.argv[1])
host = "demo.s3.sealgate.test:%d" % port
req = AWSRequest(method="PUT", url="http://%s/v/key.txt" % host, data=b"virtual", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
S3SigV4Auth(Credentials(sys.argv[2], sys.argv[3]), "s3", "us-east-1").add_auth(req)
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = dict(req.headers.items())
headers["Host"] = host
conn.request("PUT", "/v/key.txt", body=b"virtual", headers=headers)
r = conn.getresponse()
print(r.status, r.read().decode()[:200])
