"""Host tokens (hub/auth.py) against an independent HMAC."""

from __future__ import annotations

import json

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


def test_the_previous_secret_counts_until_its_grace_ends_and_the_start_is_kept(tmp_path):
    from hub.auth import Keys, previous_until

    old, new = b"the old secret of the hub", b"the new secret of the hub"
    until = previous_until(tmp_path, old, 3600.0, now=1000.0)
    assert until == 4600.0
    # neither a restart nor a longer wait moves the start; a new grace moves the end
    assert previous_until(tmp_path, old, 3600.0, now=2000.0) == 4600.0
    assert previous_until(tmp_path, old, 60.0, now=2000.0) == 1060.0
    assert old.hex() not in (tmp_path / "previous_secret.json").read_text()
    # a start noted in the future (a clock ahead, then fixed), or not a number: from now
    grace_file = tmp_path / "previous_secret.json"
    kept = json.loads(grace_file.read_text())
    grace_file.write_text(json.dumps({**kept, "since": 1e12}))
    assert previous_until(tmp_path, old, 60.0, now=3000.0) == 3060.0
    assert previous_until(tmp_path, old, 60.0, now=3100.0) == 3060.0  # noted: it ends
    grace_file.write_text(json.dumps({**kept, "since": float("nan")}))
    assert previous_until(tmp_path, old, 60.0, now=3000.0) == 3060.0
    # another previous secret starts its own grace
    assert previous_until(tmp_path, b"yet another old secret", 3600.0, now=2000.0) == 5600.0

    keys = Keys(new, old, until)
    bearer = "Bearer " + host_token("web-01", old)
    assert keys.host(bearer, now=4599.0) == ("web-01", True)
    assert keys.host(bearer, now=4600.0) == (None, False)  # the grace is over
    assert keys.host("Bearer " + host_token("web-01", new), now=9e9) == ("web-01", False)
    assert Keys(new).host(bearer, now=0.0) == (None, False)
