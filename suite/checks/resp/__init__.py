"""The RESP2 profile's own checks (PROTOCOL-RESP2.md), run under --profile resp2.

Checks that judge the same behaviour in both profiles (TLS versions, urgent
data) are written once against a Dialect and live beside CloudHash/1's in
suite/checks; these are RESP2's own.
"""
