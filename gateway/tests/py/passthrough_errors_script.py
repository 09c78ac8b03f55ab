import sys, boto3, botocore
from botocore.config import Config
endpoint, key, secret, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                  config=Config(signature_version="s3v4", retries={"max_attempts": 1}))
try:
    s3.list_objects_v2(Bucket=bucket)
    print("allowed")
except botocore.exceptions.ClientError as e:
    print(e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
