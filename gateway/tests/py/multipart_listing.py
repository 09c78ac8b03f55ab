import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
MiB = 1024 * 1024
up = s3.create_multipart_upload(Bucket="demo", Key="mp")
parts = []
for n, chunk in enumerate([b"a" * (5 * MiB), b"b" * (5 * MiB), b"c" * 12345], start=1):
    e = s3.upload_part(Bucket="demo", Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=chunk)["ETag"]
    parts.append({"PartNumber": n, "ETag": e})
s3.complete_multipart_upload(Bucket="demo", Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
s3.put_object(Bucket="demo", Key="single", Body=b"s" * 70000)
sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="demo")["Contents"]}
assert sizes == {"mp": 10 * MiB + 12345, "single": 70000}, sizes
v1 = {o["Key"]: o["Size"] for o in s3.list_objects(Bucket="demo")["Contents"]}
assert v1 == sizes, v1
if sys.argv[2] == "versions":
    versions = {v["Key"]: v["Size"] for v in s3.list_object_versions(Bucket="demo")["Versions"]}
    assert versions == sizes, versions
print("ok")
