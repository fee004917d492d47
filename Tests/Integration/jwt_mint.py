"""Mints JWTs and keys for the integration tests with the `cryptography` package."""
import base64
import hashlib
import hmac
import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


class Key:
    """A signing key for one algorithm, with its public half as PEM and as a JWK."""

    def __init__(self, alg, kid, secret=None):
        self.alg, self.kid = alg, kid
        if alg.startswith("HS"):
            self.secret = secret or (b"s" * 64)
            self.private = None
        elif alg.startswith(("RS", "PS")):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "ES384":
            self.private = ec.generate_private_key(ec.SECP384R1())
        elif alg == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()

    def public_pem(self):
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self):
        pub = self.private.public_key()
        if self.alg.startswith(("RS", "PS")):
            n = pub.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "alg": self.alg, "use": "sig",
                    "n": b64u(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64u(n.e.to_bytes(3, "big"))}
        if self.alg.startswith("ES"):
            n = pub.public_numbers()
            size = 32 if self.alg == "ES256" else 48
            return {"kty": "EC", "kid": self.kid, "crv": "P-256" if size == 32 else "P-384",
                    "x": b64u(n.x.to_bytes(size, "big")), "y": b64u(n.y.to_bytes(size, "big"))}
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "kid": self.kid, "crv": "Ed25519", "x": b64u(raw)}

    def sign(self, data):
        a = self.alg
        if a.startswith("HS"):
            return hmac.new(self.secret, data, getattr(hashlib, "sha" + a[2:])).digest()
        if a.startswith("RS"):
            return self.private.sign(data, padding.PKCS1v15(), HASH[a[2:]]())
        if a == "PS256":
            return self.private.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        if a.startswith("ES"):
            size = 32 if a == "ES256" else 48
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(HASH[a[2:]]())))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return self.private.sign(data)

    def token(self, claims=None, header=None, **overrides):
        c = {"tenant_id": "acme", "sub": "user-1", "tier": "pro", "exp": int(time.time()) + 600,
             "iat": int(time.time()), "iss": "https://auth.example.com", "aud": "portcullis"}
        c.update(claims or {})
        for k, v in overrides.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        h = {"alg": self.alg, "kid": self.kid, "typ": "JWT"}
        h.update(header or {})
        signing_input = (b64u(json.dumps(h).encode()) + "." + b64u(json.dumps(c).encode())).encode()
        return signing_input.decode() + "." + b64u(self.sign(signing_input))
