# A real browser through an encrypting gateway: headless Chromium opens a
# page served from another origin, which uploads with presigned PUTs (V4,
# and V2 as boto3 signs by default), reads back with presigned GETs (V4
# and V2) and submits HTML forms (V4 and V2 POST policies). Each needs the
# gateway's CORS answers (preflights, headers on responses); the page
# reports what it saw, the stored bytes are ciphertext and read back
# exactly.
# argv: gateway url, backend url, backend key id, backend secret.
import http.server, json, os, shutil, socket, subprocess, sys, tempfile, threading, urllib.parse
import boto3, botocore
from botocore.config import Config
gw_url, be_url, be_key, be_secret = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=gw_url, region_name="us-east-1")
v4 = boto3.client("s3", endpoint_url=gw_url, region_name="us-east-1", config=Config(signature_version="s3v4"))
backend = boto3.client("s3", endpoint_url=be_url, region_name="us-east-1",
                       aws_access_key_id=be_key, aws_secret_access_key=be_secret)
N = 1_000_003
# The same bytes the page makes.
data = bytes(((i * 7) + (i >> 3)) & 255 for i in range(N))

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)
origin = "http://127.0.0.1:%d" % server.server_address[1]
s3.put_bucket_cors(Bucket="demo", CORSConfiguration={"CORSRules": [
    {"AllowedOrigins": [origin], "AllowedMethods": ["GET", "PUT", "POST"], "AllowedHeaders": ["*"],
     "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 60}]})

def presign(client, method, key, **params):
    return client.generate_presigned_url(method, Params=dict(Bucket="demo", Key=key, **params), ExpiresIn=600)

def form(client, key):
    redirect = origin + "/posted"
    post = client.generate_presigned_post("demo", key, Fields={"success_action_redirect": redirect},
                                          Conditions=[{"success_action_redirect": redirect}], ExpiresIn=600)
    return post

urls = {
    "put_v4": presign(v4, "put_object", "b-v4.bin"),
    "put_v2": presign(s3, "put_object", "b-v2.bin", ContentType="application/octet-stream"),
    "get_v4": presign(v4, "get_object", "b-v4.bin"),
    "get_v2": presign(s3, "get_object", "b-v2.bin"),
    "form_v4": form(v4, "f-v4.bin"),
    "form_v2": form(s3, "f-v2.bin"),
}
assert "X-Amz-Signature" in urls["put_v4"] and "AWSAccessKeyId" in urls["put_v2"], urls
assert "x-amz-signature" in urls["form_v4"]["fields"] and "signature" in urls["form_v2"]["fields"]

PAGE = """<!doctype html><html><body><iframe name="sink"></iframe><script>
const U = %s, N = %d;
const data = new Uint8Array(N);
for (let i = 0; i < N; i++) data[i] = ((i * 7) + (i >> 3)) & 255;
const report = (r) => fetch("/result", {method: "POST", body: JSON.stringify(r)});
function same(buf) {
  const b = new Uint8Array(buf);
  if (b.length !== N) return "length " + b.length;
  for (let i = 0; i < N; i++) if (b[i] !== data[i]) return "byte " + i;
  return "same";
}
function submit(which) {
  // A real HTML form: its fields, the file set as a user picking it would.
  const post = U[which];
  const f = document.createElement("form");
  f.method = "POST"; f.action = post.url; f.enctype = "multipart/form-data"; f.target = "sink";
  for (const [k, v] of Object.entries(post.fields)) {
    const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
  }
  const file = document.createElement("input"); file.type = "file"; file.name = "file";
  const dt = new DataTransfer(); dt.items.add(new File([data], which + ".bin"));
  file.files = dt.files; f.appendChild(file);
  document.body.appendChild(f);
  return new Promise((done) => {
    window.addEventListener("message", function got(e) {
      if (e.data && e.data.posted === which) { window.removeEventListener("message", got); done(e.data.query); }
    });
    f.submit();
  });
}
(async () => {
  const r = {};
  try {
    let x = await fetch(U.put_v4, {method: "PUT", body: data});
    r.put_v4 = [x.status, x.headers.get("etag")];
    x = await fetch(U.put_v2, {method: "PUT", body: data, headers: {"Content-Type": "application/octet-stream"}});
    r.put_v2 = [x.status, x.headers.get("etag")];
    x = await fetch(U.get_v4); r.get_v4 = [x.status, same(await x.arrayBuffer())];
    x = await fetch(U.get_v2); r.get_v2 = [x.status, same(await x.arrayBuffer())];
    r.form_v4 = await submit("form_v4");
    r.form_v2 = await submit("form_v2");
  } catch (e) { r.error = String(e); }
  await report(r);
})();
</script></body></html>"""

results = {}
done = threading.Event()

class Page(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, kind="text/html"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/":
            self.send(200, (PAGE % (json.dumps(urls), N)).encode())
        elif path == "/posted":
            # Where the gateway sends the form's frame after an upload.
            which = "form_v4" if "f-v4" in query else "form_v2"
            msg = json.dumps({"posted": which, "query": dict(urllib.parse.parse_qsl(query))})
            self.send(200, ("<script>parent.postMessage(%s, '*')</script>" % msg).encode())
        else:
            self.send(404, b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        results.update(json.loads(body))
        self.send(200, b"")
        done.set()

server.RequestHandlerClass = Page
threading.Thread(target=server.serve_forever, daemon=True).start()
profile = tempfile.mkdtemp()
browser = subprocess.Popen(
    ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
     "--disable-background-networking", "--disable-component-update", "--disable-sync",
     "--user-data-dir=" + profile, origin + "/"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    assert done.wait(120), "the page did not report"
finally:
    browser.kill()
    browser.wait()
    shutil.rmtree(profile, ignore_errors=True)

assert "error" not in results, results
for key, which in [("b-v4.bin", "put_v4"), ("b-v2.bin", "put_v2"), ("f-v4.bin", "form_v4"), ("f-v2.bin", "form_v2")]:
    stored = backend.get_object(Bucket="demo", Key=key)["Body"].read()
    assert data[4096:4160] not in stored and len(stored) > N, (key, "stored encrypted")
    got = s3.get_object(Bucket="demo", Key=key)
    assert got["Body"].read() == data, key
    etag = got["ETag"]
    if which.startswith("put"):
        # The page could read the status and the exposed ETag.
        assert results[which] == [200, etag], (which, results[which], etag)
    else:
        q = results[which]
        assert q["key"] == key and q["bucket"] == "demo" and q["etag"] == etag, (which, q, etag)
assert results["get_v4"] == [200, "same"] and results["get_v2"] == [200, "same"], results
print("ok")
