# Rewrites one envelope metadata field of a stored object in place, as
# someone with write access to the backend could (a copy onto itself with
# replaced metadata; the body is untouched). argv: backend url, key id,
# secret, bucket, key, field (without the x-amz-meta- prefix), new value.
import sys, boto3
url, key_id, secret, bucket, key, field, value = sys.argv[1:8]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=key_id,
                  aws_secret_access_key=secret, region_name="us-east-1")
meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
if field not in meta:
    raise SystemExit(f"{field} not in {sorted(meta)}")
meta[field] = value
s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
               Metadata=meta, MetadataDirective="REPLACE")
print("ok")
