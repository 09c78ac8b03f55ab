# AWS KMS (moto's server) for the aws-kms provider tests.
#   create <kms url> <alias>        -> prints "<key id> <arn>" of a new key with that alias
#   disable <kms url> <key id>      -> disables the key
#   enable <kms url> <key id>       -> enables it again
#   schedule-deletion <kms url> <key id>  -> schedules its deletion in 7 days
#   cancel-deletion <kms url> <key id>    -> cancels that (the key is then disabled)
#   context <kms url> <s3 url> <s3 key id> <s3 secret> <bucket> <key> <context key> <context value>
#       reads the stored object's wrapped data key and context around the
#       gateway, and checks KMS decrypts it only under that context.
# KMS calls use the test credentials moto accepts.
import base64, struct, sys, boto3
from botocore.exceptions import ClientError

def kms(url):
    return boto3.client("kms", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")

def check(cond, what):
    if not cond:
        raise SystemExit(f"failed: {what}")

cmd = sys.argv[1]
if cmd == "create":
    k = kms(sys.argv[2])
    meta = k.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    k.create_alias(AliasName=sys.argv[3], TargetKeyId=meta["KeyId"])
    print(meta["KeyId"], meta["Arn"])
elif cmd == "disable":
    kms(sys.argv[2]).disable_key(KeyId=sys.argv[3])
    print("ok")
elif cmd == "enable":
    kms(sys.argv[2]).enable_key(KeyId=sys.argv[3])
    print("ok")
elif cmd == "schedule-deletion":
    out = kms(sys.argv[2]).schedule_key_deletion(KeyId=sys.argv[3], PendingWindowInDays=7)
    print(out["KeyState"] if "KeyState" in out else "PendingDeletion")
elif cmd == "cancel-deletion":
    kms(sys.argv[2]).cancel_key_deletion(KeyId=sys.argv[3])
    print("ok")
elif cmd == "context":
    kms_url, s3_url, key_id, secret, bucket, key, ck, cv = sys.argv[2:10]
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                      aws_access_key_id=key_id, aws_secret_access_key=secret)
    meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    wrapped = base64.b64decode(meta["sealgate-dek"])
    raw, ctx = base64.b64decode(meta["sealgate-ctx"]), {}
    while raw:
        (n,) = struct.unpack(">I", raw[:4]); k_ = raw[4:4 + n].decode(); raw = raw[4 + n:]
        (m,) = struct.unpack(">I", raw[:4]); v = raw[4:4 + m].decode(); raw = raw[4 + m:]
        ctx[k_] = v
    check(ctx.get(ck) == cv, f"stored context {ctx} holds {ck}={cv}")
    out = kms(kms_url).decrypt(CiphertextBlob=wrapped, EncryptionContext=ctx)
    check(len(out["Plaintext"]) == 32, "a 32-byte data key under the stored context")
    check(out["KeyId"] == meta["sealgate-key-id"], "the key the object names")
    other = dict(ctx); other[ck] = cv + "-other"
    try:
        kms(kms_url).decrypt(CiphertextBlob=wrapped, EncryptionContext=other)
    except ClientError as e:
        check(e.response["Error"]["Code"] == "InvalidCiphertextException", e.response["Error"])
    else:
        raise SystemExit("KMS decrypted under another context")
    print("ok")
