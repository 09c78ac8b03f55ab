// The AWS SDK for JavaScript v3 with its defaults (only the endpoint and
// region set): put, get, ranges, head, a multipart upload through
// lib-storage's Upload, copy, list and delete through an encrypting
// gateway. Prints "ok" when every result is exact.
// argv: gateway url.
import {
  S3Client, PutObjectCommand, GetObjectCommand, HeadObjectCommand, CopyObjectCommand,
  ListObjectsV2Command, DeleteObjectCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import assert from "node:assert/strict";

// argv[3]: "exact" when the backend lists ETags (the gateway then lists a
// multipart object's exact size; s3s-fs lists none).
const [endpoint, listing] = process.argv.slice(2);
const s3 = new S3Client({ endpoint, region: "us-east-1" });
const Bucket = "demo";
const bytes = (n, seed) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * seed + (i >> 7)) & 255;
  return b;
};
const body = async (out) => Buffer.from(await out.Body.transformToByteArray());

const small = bytes(70_001, 3);
await s3.send(new PutObjectCommand({ Bucket, Key: "js/small.bin", Body: small, Metadata: { note: "js" } }));
const got = await s3.send(new GetObjectCommand({ Bucket, Key: "js/small.bin" }));
assert.equal(got.ServerSideEncryption, "aws:kms");
assert.deepEqual(got.Metadata, { note: "js" });
assert.ok((await body(got)).equals(small));
const range = await s3.send(new GetObjectCommand({ Bucket, Key: "js/small.bin", Range: "bytes=65530-65545" }));
assert.equal(range.ContentRange, `bytes 65530-65545/${small.length}`);
assert.ok((await body(range)).equals(small.subarray(65530, 65546)));
const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "js/small.bin" }));
assert.equal(head.ContentLength, small.length);

// lib-storage: 5 MiB parts, four at a time.
const large = bytes(12 * 1024 * 1024 + 7, 5);
const up = new Upload({ client: s3, params: { Bucket, Key: "js/large.bin", Body: large } });
const done = await up.done();
assert.equal(done.Key, "js/large.bin");
const back = await s3.send(new GetObjectCommand({ Bucket, Key: "js/large.bin" }));
assert.equal(back.ContentLength, large.length);
assert.ok((await body(back)).equals(large));
const across = await s3.send(new GetObjectCommand({ Bucket, Key: "js/large.bin", Range: "bytes=5242870-5242900" }));
assert.ok((await body(across)).equals(large.subarray(5242870, 5242901)));

await s3.send(new CopyObjectCommand({ Bucket, Key: "js/copy.bin", CopySource: `${Bucket}/js/small.bin` }));
assert.ok((await body(await s3.send(new GetObjectCommand({ Bucket, Key: "js/copy.bin" })))).equals(small));

const listed = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: "js/" }));
const sizes = Object.fromEntries(listed.Contents.map((o) => [o.Key, o.Size]));
const expected = { "js/copy.bin": small.length, "js/large.bin": large.length, "js/small.bin": small.length };
if (listing !== "exact") expected["js/large.bin"] = sizes["js/large.bin"];
assert.deepEqual(sizes, expected);

for (const Key of Object.keys(sizes)) await s3.send(new DeleteObjectCommand({ Bucket, Key }));
await assert.rejects(s3.send(new HeadObjectCommand({ Bucket, Key: "js/small.bin" })), (e) => e.$metadata.httpStatusCode === 404);
// Left for the test to look at as the backend stores it.
await s3.send(new PutObjectCommand({ Bucket, Key: "js/kept.bin", Body: small }));
console.log("ok");
