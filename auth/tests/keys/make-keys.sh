#!/usr/bin/env bash
# Test-only keys for auth/tests (never used outside tests). Regenerate with:
#   bash auth/tests/keys/make-keys.sh
# OpenSSL 3: RSA 2048 (PKCS#8), P-256 (PKCS#8), Ed25519 (PKCS#8); public halves as SPKI PEM
# and the RSA public key also as DER (for the HS256 key-confusion attack, RFC 8725 section 2.1).
set -euo pipefail
cd "$(dirname "$0")"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-other.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256-other.pem
openssl genpkey -algorithm ED25519 -out ed25519.pem
openssl pkey -in rsa.pem -pubout -out rsa.pub.pem
openssl pkey -in rsa.pem -pubout -outform DER -out rsa.pub.der
openssl pkey -in p256.pem -pubout -out p256.pub.pem
openssl pkey -in p256-other.pem -pubout -out p256-other.pub.pem
openssl pkey -in ed25519.pem -pubout -out ed25519.pub.pem
