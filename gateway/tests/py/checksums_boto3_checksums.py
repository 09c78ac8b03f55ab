# boto3 with every checksum algorithm: managed transfers (upload_fileobj,
# upload_file) and the low-level calls; prints each Complete's checksum
# answer and the first part's, as JSON, for comparison between endpoints.
import boto3, hashlib, io, json, os, sys, tempfile
from botocore.config import Config
endpoint, key_id, secret, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                  aws_secret_access_key=secret, region_name="us-east-1")
data = bytes((i * 7 + i // 65536) % 251 for i in range(20_000_000))
part = 8 * 1024 * 1024
answers = {}
path = os.path.join(tempfile.mkdtemp(), "src")
open(path, "wb").write(data)
for alg in [None, "CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]:
    extra = {} if alg is None else {"ChecksumAlgorithm": alg}
    s3.upload_fileobj(io.BytesIO(data), bucket, f"obj-{alg}", ExtraArgs=extra)
    s3.upload_file(path, bucket, f"file-{alg}", ExtraArgs=extra)
    for key in (f"obj-{alg}", f"file-{alg}"):
        back = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert back == data, (alg, key, len(back))
    if alg is None:
        continue
    kinds = ["FULL_OBJECT"] if alg == "CRC64NVME" else ["COMPOSITE"]
    if alg in ("CRC32", "CRC32C"):
        kinds.append("FULL_OBJECT")
    for kind in kinds:
        key = f"ll-{alg}-{kind}"
        mp = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=alg, ChecksumType=kind)
        assert mp.get("ChecksumAlgorithm") == alg, mp
        parts = []
        for i, off in enumerate(range(0, len(data), part)):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=mp["UploadId"], PartNumber=i + 1,
                               Body=data[off:off + part], ChecksumAlgorithm=alg)
            p = {"PartNumber": i + 1, "ETag": r["ETag"], "Checksum" + alg: r["Checksum" + alg]}
            parts.append(p)
        listed = sorted(s3.list_parts(Bucket=bucket, Key=key, UploadId=mp["UploadId"])["Parts"], key=lambda p: p["PartNumber"])
        assert [p["Size"] for p in listed] == [part, part, len(data) - 2 * part], listed
        args = {}
        if kind == "FULL_OBJECT":
            # The client's own full-object checksum goes along; it must match.
            from awscrt import checksums
            import base64
            if alg == "CRC32":
                v = checksums.crc32(data).to_bytes(4, "big")
            elif alg == "CRC32C":
                v = checksums.crc32c(data).to_bytes(4, "big")
            else:
                v = checksums.crc64nvme(data).to_bytes(8, "big")
            args["Checksum" + alg] = base64.b64encode(v).decode()
            args["ChecksumType"] = "FULL_OBJECT"
        c = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=mp["UploadId"],
                                         MultipartUpload={"Parts": parts}, **args)
        answers[key] = {"complete": c.get("Checksum" + alg), "type": c.get("ChecksumType"),
                        "part1": parts[0]["Checksum" + alg]}
        back = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert back == data, key
print(json.dumps(answers, sort_keys=True))
