# An Azure Key Vault TEST DOUBLE (not Azure): the parts of the Key Vault
# REST API and of Entra ID's token endpoint that the gateway uses, over
# HTTPS, with real RSA-OAEP-256 under real 2048-bit RSA keys.
#
# - Token endpoint: POST /<tenant>/oauth2/v2.0/token (client credentials);
#   the tenant, client id, client secret and scope are checked; the token
#   is random and expires.
# - Vault: every request without a valid bearer token is answered 401 with
#   a `WWW-Authenticate: Bearer authorization=..., resource=...` challenge,
#   as the vault does (the SDK's bearer-challenge flow). GET /keys/<name>[/<version>],
#   POST /keys/<name>[/<version>]/wrapkey and .../unwrapkey with alg
#   RSA-OAEP-256; errors in the vault's JSON shape (KeyNotFound, Forbidden
#   with innererror KeyDisabled, BadParameter).
# - Control (the double's own, unauthenticated): POST /_double/rotate/<name>
#   adds a version, /_double/disable/<name> and /_double/enable/<name> flip
#   every version; GET /_double/counts answers calls by operation as JSON.
#
# argv: port, cert.pem, key.pem, tenant, client_id, client_secret, key_name
import base64, json, re, secrets, ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

port, cert, key, tenant, client_id, client_secret, first_key = sys.argv[1:8]
RESOURCE = "https://vault.azure.net"
TOKEN_LIFETIME = 3600
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

lock = threading.Lock()
tokens = {}  # token -> expiry
keys = {}  # name -> [ {version, private, enabled} ], newest last
counts = {}


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_version(name):
    keys.setdefault(name, []).append(
        {
            "version": secrets.token_hex(16),
            "private": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "enabled": True,
        }
    )


new_version(first_key)


def count(op):
    with lock:
        counts[op] = counts.get(op, 0) + 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, message, inner=None):
        err = {"code": code, "message": message}
        if inner:
            err["innererror"] = {"code": inner}
        self.reply(status, {"error": err})

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length", 0) or 0))

    def authorized(self):
        auth = self.headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        with lock:
            ok = token is not None and tokens.get(token, 0) > time.time()
        if not ok:
            count("challenge")
            challenge = (
                f'Bearer authorization="https://127.0.0.1:{port}/{tenant}", '
                f'resource="{RESOURCE}"'
            )
            self.reply(401, {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                       [("www-authenticate", challenge)])
        return ok

    def version(self, name, version):
        versions = keys.get(name)
        if not versions:
            return None
        if not version:
            return versions[-1]
        return next((v for v in versions if v["version"] == version), None)

    def kid(self, name, v):
        return f"https://127.0.0.1:{port}/keys/{name}/{v['version']}"

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/_double/counts":
            with lock:
                return self.reply(200, dict(counts))
        m = re.fullmatch(r"/keys/([A-Za-z0-9-]+)(?:/([A-Za-z0-9]*))?/?", path)
        if not m:
            return self.error(404, "NotFound", "no such route")
        if not self.authorized():
            return
        count("get")
        name, version = m.group(1), m.group(2)
        v = self.version(name, version)
        if v is None:
            return self.error(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault.")
        if not v["enabled"]:
            return self.error(403, "Forbidden", "Operation get is not allowed on a disabled key.", "KeyDisabled")
        pub = v["private"].public_key().public_numbers()
        self.reply(200, {
            "key": {
                "kid": self.kid(name, v),
                "kty": "RSA",
                "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
                "n": b64u(pub.n.to_bytes(256, "big")),
                "e": b64u(pub.e.to_bytes(3, "big")),
            },
            "attributes": {"enabled": v["enabled"], "recoveryLevel": "Recoverable+Purgeable"},
        })

    def do_POST(self):
        split = urlsplit(self.path)
        path = split.path
        body = self.body()
        m = re.fullmatch(r"/_double/(rotate|disable|enable)/([A-Za-z0-9-]+)", path)
        if m:
            action, name = m.groups()
            with lock:
                if action == "rotate":
                    new_version(name)
                else:
                    for v in keys.get(name, []):
                        v["enabled"] = action == "enable"
            return self.reply(200, {"versions": [v["version"] for v in keys.get(name, [])]})
        if path == f"/{tenant}/oauth2/v2.0/token":
            return self.token(body)
        m = re.fullmatch(r"/keys/([A-Za-z0-9-]+)/([A-Za-z0-9]*)/?(wrapkey|unwrapkey)", path)
        if not m:
            return self.error(404, "NotFound", "no such route")
        if not self.authorized():
            return
        name, version, op = m.groups()
        count(op)
        if parse_qs(split.query).get("api-version") is None:
            return self.error(400, "MissingApiVersionParameter", "api-version is required")
        try:
            params = json.loads(body)
            value = unb64u(params["value"])
        except (ValueError, KeyError, TypeError):
            return self.error(400, "BadParameter", "The request body is not valid.")
        if params.get("alg") != "RSA-OAEP-256":
            return self.error(400, "BadParameter", f"Algorithm {params.get('alg')} is not supported by this double.")
        v = self.version(name, version)
        if v is None:
            return self.error(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault.")
        if not v["enabled"]:
            return self.error(403, "Forbidden", f"Operation {op} is not allowed on a disabled key.", "KeyDisabled")
        try:
            if op == "wrapkey":
                out = v["private"].public_key().encrypt(value, OAEP)
            else:
                out = v["private"].decrypt(value, OAEP)
        except ValueError:
            return self.error(400, "BadParameter", "Unwrap failed: the ciphertext is not valid for this key.")
        self.reply(200, {"kid": self.kid(name, v), "value": b64u(out)})

    def token(self, body):
        count("token")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return self.reply(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != client_id or not secrets.compare_digest(
            form.get("client_secret", ""), client_secret
        ):
            return self.reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
        if form.get("scope") != RESOURCE + "/.default":
            return self.reply(400, {"error": "invalid_scope", "error_description": f"scope {form.get('scope')} is not this vault's"})
        token = secrets.token_urlsafe(32)
        with lock:
            tokens[token] = time.time() + TOKEN_LIFETIME
        self.reply(200, {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME, "access_token": token})


server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
