"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/seed-*) and the JWKS the
credentials target verifies against (fuzz/jwks.json), from the test keys of auth/tests/keys.

    python3 -S fuzz/seeds.py

Standard library only; signatures are made with the openssl command line. Tokens expire in
2100, so a seed stays a valid token as long as the test keys do.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
KEYS = FUZZ.parent / "auth/tests/keys"
ISS = "https://issuer.fuzz.invalid/"
AUD = "tollgate"
EXP = 4102444800  # 2100-01-01
ALB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/tollgate/0123456789abcdef"
ALB_KID = "alb-kid-1"


def b64u(data, pad=False):
    text = base64.urlsafe_b64encode(data).decode()
    return text if pad else text.rstrip("=")


def der_of(pem):
    return subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pem), "-outform", "DER"],
                          check=True, capture_output=True).stdout


def der_ints(sig):
    """The two INTEGERs of a DER ECDSA signature, as 32-byte big-endian r || s."""
    assert sig[0] == 0x30
    i, out = 2 if sig[1] < 0x80 else 3, b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        out += int.from_bytes(sig[i + 2:i + 2 + n], "big").to_bytes(32, "big")
        i += 2 + n
    return out


def sign(alg, key, message):
    with tempfile.NamedTemporaryFile() as f:
        f.write(message)
        f.flush()
        if alg == "EdDSA":
            cmd = ["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(key), "-in", f.name]
        else:
            cmd = ["openssl", "dgst", "-sha256", "-sign", str(key), f.name]
        sig = subprocess.run(cmd, check=True, capture_output=True).stdout
    return der_ints(sig) if alg == "ES256" else sig


def jwt(alg, key, header, claims, pad=False):
    h = b64u(json.dumps(header, separators=(",", ":")).encode(), pad)
    p = b64u(json.dumps(claims, separators=(",", ":")).encode(), pad)
    return f"{h}.{p}.{b64u(sign(alg, key, f'{h}.{p}'.encode()), pad)}"


def jwks():
    rsa_n = subprocess.run(["openssl", "rsa", "-pubin", "-in", str(KEYS / "rsa.pub.pem"), "-noout", "-modulus"],
                           check=True, capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    ec = der_of(KEYS / "p256.pub.pem")[-64:]
    ed = der_of(KEYS / "ed25519.pub.pem")[-32:]
    return {"keys": [
        {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "rsa", "n": b64u(bytes.fromhex(rsa_n)), "e": "AQAB"},
        {"kty": "EC", "alg": "ES256", "crv": "P-256", "kid": "p256", "x": b64u(ec[:32]), "y": b64u(ec[32:])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64u(ed)},
        {"kty": "oct", "alg": "HS256", "kid": "hmac", "k": "c2VjcmV0"},
    ]}


def main():
    corpus = FUZZ / "corpus"
    seeds = {}
    claims = {"iss": ISS, "aud": AUD, "sub": "user-1", "exp": EXP, "iat": 1767225600,
              "scope": "requests:read", "name": "Fuzz"}
    es = jwt("ES256", KEYS / "p256.pem", {"alg": "ES256", "typ": "JWT", "kid": "p256"}, claims)
    rs = jwt("RS256", KEYS / "rsa.pem", {"alg": "RS256", "kid": "rsa"}, {**claims, "scp": ["requests:read:own"]})
    ed = jwt("EdDSA", KEYS / "ed25519.pem", {"alg": "EdDSA", "kid": "ed"}, claims)
    other = jwt("ES256", KEYS / "p256-other.pem", {"alg": "ES256", "kid": "p256"}, claims)
    expired = jwt("ES256", KEYS / "p256.pem", {"alg": "ES256", "kid": "p256"}, {**claims, "exp": 1700000000})
    wrong_aud = jwt("ES256", KEYS / "p256.pem", {"alg": "ES256", "kid": "p256"}, {**claims, "aud": ["x", "y"]})
    none = b64u(b'{"alg":"none"}') + "." + b64u(json.dumps(claims).encode()) + "."
    hs = b64u(b'{"alg":"HS256","kid":"rsa"}') + "." + b64u(json.dumps(claims).encode()) + ".c2ln"
    alb_header = {"typ": "JWT", "kid": ALB_KID, "alg": "ES256", "iss": ISS, "client": "client-1",
                  "signer": ALB_ARN, "exp": EXP}
    alb = jwt("ES256", KEYS / "p256.pem", alb_header,
              {"sub": "alice-sub", "email": "alice@example.com", "exp": EXP, "iss": ISS}, pad=True)
    key = "tg_0123456789abcdef0123456789abcdef_" + b64u(bytes(range(32)))
    seeds["credentials"] = {
        "jwt-es256": f"authorization: Bearer {es}\n",
        "jwt-rs256-scp": f"Authorization: bearer {rs}\n",
        "jwt-eddsa": f"authorization: Bearer {ed}\n",
        "jwt-other-key": f"authorization: Bearer {other}\n",
        "jwt-expired": f"authorization: Bearer {expired}\n",
        "jwt-wrong-aud": f"authorization: Bearer {wrong_aud}\n",
        "jwt-alg-none": f"authorization: Bearer {none}\n",
        "jwt-hs256": f"authorization: Bearer {hs}\n",
        "api-key-header": f"x-api-key: {key}\n",
        "api-key-bearer": f"authorization: Bearer {key}\n",
        "two-authorizations": f"authorization: Bearer {es}\nauthorization: Bearer {key}\n",
        "basic": "authorization: Basic dXNlcjpwYXNz\n",
        "alb-oidc-data": f"x-amzn-oidc-data: {alb}\nx-amzn-oidc-identity: alice-sub\n",
    }
    seeds["routes"] = {
        "echo": "GET /v1/echo\n" + (FUZZ.parent / "routes.toml").read_text(),
        "echo-rest": "POST /v1/echo/a/b%20c\n",
        "requests": "GET /v1/requests\n",
        "request-id": "HEAD /v1/requests/0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b\n",
        "method-not-allowed": "DELETE /v1/requests\n",
        "not-found": "GET /v2/unknown//x\n",
        "table": "PUT /api/v1/orders/42/items\n[[routes]]\npath = \"/api/{version}/orders/{id}/{*rest}\"\n"
                 "methods = [\"GET\", \"PUT\"]\nfunction = \"orders\"\ntimeout_ms = 3000\nrecord = \"before\"\n"
                 "auth = \"api_key\"\nscopes = [\"orders:write\"]\n",
    }
    seeds["redact"] = {
        "query": "a=1&api_key=s3cr3t&b\nx=1",
        "semicolons": "a=1;token=s3cr3t&b=2\n;cr3t&b=2",
        "brackets": "user[password]=p&token%5B%5D=t\n&filter[0]=x",
        "url-in-value": "next=https://h/cb?code=s3cr3t&a=1\n#frag",
        "headers": "referer: https://h/p?q=1&sig=s3cr3t\nlocation: https://h/cb#access_token=t&state=x\n"
                   "link: <https://h/p?page=2&key=k>; rel=\"next\"\nx-api-key: tg_x\n",
        "presigned": "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20260101&X-Amz-Signature=abc\n",
    }
    response = lambda status, body, ctype="application/json", b64=False: json.dumps({
        "statusCode": status, "statusDescription": f"{status} {'OK' if status == 200 else 'Bad Request'}",
        "headers": {"content-type": ctype}, "multiValueHeaders": {"content-type": [ctype]},
        "body": body, "isBase64Encoded": b64})
    echo = {"method": "GET", "path": "/v1/echo/hello", "query": {"name": ["a b"], "x": ["1", "2"]},
            "headers": {"accept": ["application/json"], "host": ["api.example.com"]},
            "body": "", "is_base64_encoded": False, "body_bytes": 0, "delayed_ms": 0}
    seeds["alb_response"] = {
        "echo-get": response(200, json.dumps(echo)),
        "echo-binary": response(200, base64.b64encode(b"\xff\x00binary").decode(), "application/octet-stream", True),
        "problem": response(400, json.dumps({"type": "about:blank", "title": "Bad Request", "status": 400,
                                             "code": "invalid_parameter", "detail": "limit: expected 1-1000"}),
                            "application/problem+json"),
        "single-headers": json.dumps({"statusCode": 201, "headers": {"x-a": "1", "connection": "close",
                                                                     "content-length": "2"}, "body": "hi"}),
        "multi-headers": json.dumps({"statusCode": 302, "multiValueHeaders": {"location": ["/x"],
                                     "set-cookie": ["a=1", "b=2"], "x-request-id": ["forged"]}}),
    }
    cursor = lambda at, rid: b64u(f"{at}|{rid}".encode())
    seeds["cursor"] = {
        "issued": cursor("2026-11-25T22:10:04.123456Z", "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"),
        "rfc3339-offset": cursor("2026-11-25T22:10:04+05:30", "r1"),
        "list": "since=2026-01-01T00:00:00Z&until=2026-12-31T23:59:59-08:00&status=200&method=get"
                "&path_prefix=/v1/&principal=k1&limit=50&cursor=" + cursor("2026-11-25T22:10:04.000001Z", "x"),
        "bad": "cursor=!!&limit=0",
    }
    for target, files in seeds.items():
        d = corpus / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*"):
            old.unlink()
        for name, text in files.items():
            (d / f"seed-{name}").write_text(text)
    (FUZZ / "jwks.json").write_text(json.dumps(jwks(), indent=1) + "\n")
    print(f"seeds: {sum(len(f) for f in seeds.values())} files in {corpus}")


if __name__ == "__main__":
    main()
