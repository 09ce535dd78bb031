"""A tiny identity provider for the gateway tests (PyJWT + cryptography): it publishes a JWKS
and signs whatever token a test asks for.

    python3 jwt_issuer.py --port P [--log FILE]

GET  /.well-known/jwks.json   RSA "rsa-1", P-256 "ec-1", Ed25519 "ed-1" (and "rsa-2" once rotated)
POST /token                   {"alg": "RS256"|"ES256"|"EdDSA", "kid": ..., "claims": {...}} -> the token
POST /rotate                  publishes "rsa-2" (its tokens are refused until then)
"""

import argparse
import base64
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

KEYS = {
    "rsa-1": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "rsa-2": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "ec-1": ("ES256", ec.generate_private_key(ec.SECP256R1())),
    "ed-1": ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
}
PUBLISHED = {"rsa-1", "ec-1", "ed-1"}


def b64(n: bytes) -> str:
    return base64.urlsafe_b64encode(n).rstrip(b"=").decode()


def jwk(kid):
    alg, key = KEYS[kid]
    pub = key.public_key()
    if alg == "RS256":
        nums = pub.public_numbers()
        return {"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
                "n": b64(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
                "e": b64(nums.e.to_bytes(3, "big"))}
    if alg == "ES256":
        nums = pub.public_numbers()
        return {"kty": "EC", "kid": kid, "crv": "P-256", "alg": alg, "use": "sig",
                "x": b64(nums.x.to_bytes(32, "big")), "y": b64(nums.y.to_bytes(32, "big"))}
    raw = pub.public_bytes_raw()
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": alg, "use": "sig", "x": b64(raw)}


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/.well-known/jwks.json":
            self.server.fetches += 1
            return self.reply(200, json.dumps({"keys": [jwk(k) for k in sorted(PUBLISHED)]}))
        if self.path == "/fetches":
            return self.reply(200, str(self.server.fetches), "text/plain")
        self.reply(404, "{}")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path == "/rotate":
            PUBLISHED.add("rsa-2")
            return self.reply(204, b"")
        if self.path == "/token":
            kid = body.get("kid", "rsa-1")
            alg, key = KEYS[kid]
            token = jwt.encode(body["claims"], key, algorithm=body.get("alg", alg), headers={"kid": kid})
            return self.reply(200, token, "text/plain")
        self.reply(404, "{}")

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", help="accepted for the peers' common command line; unused")
    a = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.fetches = 0
    server.serve_forever()


if __name__ == "__main__":
    main()
