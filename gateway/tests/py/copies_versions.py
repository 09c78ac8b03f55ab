# A copy the gateway makes answers as S3 does (boto3, on moto with
# versioning): the copy's LastModified is the stored copy's own (as HEAD
# says), and a versioned source's version is x-amz-copy-source-version-id;
# a copy of an older version copies that version.
# argv: gateway url.
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
s3.put_bucket_versioning(Bucket="src", VersioningConfiguration={"Status": "Enabled"})
v1 = s3.put_object(Bucket="src", Key="k", Body=b"first")["VersionId"]
v2 = s3.put_object(Bucket="src", Key="k", Body=b"second")["VersionId"]
assert v1 and v2 and v1 != v2
# Another bucket: the gateway decrypts and encrypts again (another context).
r = s3.copy_object(Bucket="demo", Key="copy", CopySource={"Bucket": "src", "Key": "k"})
assert r["CopySourceVersionId"] == v2, r
head = s3.head_object(Bucket="demo", Key="copy")
assert r["CopyObjectResult"]["LastModified"] == head["LastModified"], (r, head)
assert s3.get_object(Bucket="demo", Key="copy")["Body"].read() == b"second"
r = s3.copy_object(Bucket="demo", Key="old", CopySource={"Bucket": "src", "Key": "k", "VersionId": v1})
assert r["CopySourceVersionId"] == v1, r
assert s3.get_object(Bucket="demo", Key="old")["Body"].read() == b"first"
print("ok")
