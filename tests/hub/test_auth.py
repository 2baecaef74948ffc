"""Host tokens (hub/auth.py) against an independent HMAC."""

from __future__ import annotations

from hub.auth import host_token, token_host


def test_golden_token_matches_an_independent_hmac():
    # printf 'vigil host token v1\0web-01' | openssl dgst -sha256 -hmac 'example hub secret'
    mac = "e083f71ed34c0d529639267844b38725a4122beaf4b0781b03bcde3402e21245"
    secret = b"example hub secret"
    assert host_token("web-01", secret) == f"web-01.{mac}"
    assert token_host(f"web-01.{mac}", secret) == "web-01"
    assert token_host(f"web-02.{mac}", secret) is None  # bound to its host
    assert token_host(f"web-01.{mac}", b"another secret") is None
    assert token_host(mac, secret) is None
    assert token_host(host_token("db.eu-1.example", secret), secret) == "db.eu-1.example"
