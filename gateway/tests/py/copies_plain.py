# Copies between encrypting and pass-through buckets (boto3): out of an
# optional encrypting bucket the copy is decrypted (the backend would have
# copied ciphertext nothing can read), out of a mandatory one it is
# refused; into an encrypting bucket a plaintext source is encrypted.
# argv: gateway url, backend url, backend key id, backend secret.
import sys, boto3, botocore
from botocore.config import Config
from boto3.s3.transfer import TransferConfig
gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, config=Config(retries={"max_attempts": 1}))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
MiB = 1024 * 1024
small = b"plaintext wanted here " * 100
big = bytes((i * 17 + i // 999) % 256 for i in range(11 * MiB + 77))
s3.put_object(Bucket="demo", Key="obj", Body=small, Metadata={"k": "v"})
s3.put_object(Bucket="secure", Key="obj", Body=small)
s3.upload_fileobj(__import__("io").BytesIO(big), "demo", "big",
                  Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
tc = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)

r = s3.copy_object(Bucket="open", Key="copy", CopySource={"Bucket": "demo", "Key": "obj"})
assert "ServerSideEncryption" not in r, r
stored = backend.get_object(Bucket="open", Key="copy")
assert stored["Body"].read() == small, "stored decrypted in the pass-through bucket"
assert stored["Metadata"] == {"k": "v"}, stored["Metadata"]
assert s3.get_object(Bucket="open", Key="copy")["Body"].read() == small

s3.copy({"Bucket": "demo", "Key": "big"}, "open", "big", Config=tc)  # UploadPartCopy
assert backend.get_object(Bucket="open", Key="big")["Body"].read() == big

def code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise SystemExit("copied")
assert code(lambda: s3.copy_object(Bucket="open", Key="x", CopySource={"Bucket": "secure", "Key": "obj"})) == "AccessDenied"
u = s3.create_multipart_upload(Bucket="open", Key="y")
assert code(lambda: s3.upload_part_copy(Bucket="open", Key="y", UploadId=u["UploadId"], PartNumber=1,
                                        CopySource={"Bucket": "secure", "Key": "obj"})) == "AccessDenied"
s3.abort_multipart_upload(Bucket="open", Key="y", UploadId=u["UploadId"])
for k in ("x", "y"):
    assert code(lambda: backend.head_object(Bucket="open", Key=k)) in ("404", "NoSuchKey"), k

# A plaintext source into an encrypting bucket is encrypted.
backend.put_object(Bucket="open", Key="raw", Body=small)
s3.copy_object(Bucket="demo", Key="from-open", CopySource={"Bucket": "open", "Key": "raw"})
assert small[:64] not in backend.get_object(Bucket="demo", Key="from-open")["Body"].read()
assert s3.get_object(Bucket="demo", Key="from-open")["Body"].read() == small
print("ok")
