"""The http probe against real servers on loopback: an aiohttp app for
statuses, bodies, requests, redirects and slowness; a real nginx with
openssl-made certificates for https (valid, expiring, expired, wrong name)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest
from aiohttp import web

from agent import __version__
from agent.core.schema import build
from collectors.checks import certs as cert_helpers
from collectors.checks import http
from collectors.checks.http import HttpCheck
from collectors.checks.model import Outcome, ProbeContext
from tests.collectors.checks.certs import Certs
from tests.collectors.checks.nginx import OK_BODY, TLS_BODY, Nginx, free_ports

# A certificate's days left, as the probe and the test compute them a few
# seconds apart at most.
SECONDS = 1 / 86400


def check(**data: Any) -> HttpCheck:
    return build(HttpCheck, {"name": "web", "type": "http", **data}, "test.toml")


async def run_probe(cfg: HttpCheck) -> Outcome:
    return await cfg.probe(ProbeContext())


# -- judging an answer (pure) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "body", "expected"),
    [
        ({}, 200, "", ("ok", "")),
        ({}, 204, "", ("ok", "")),
        ({}, 404, "", ("critical", "status 404, expected 2xx")),
        ({"expect_status": [201, 204]}, 200, "", ("critical", "status 200, expected 201, 204")),
        ({"expect_status": [404]}, 404, "", ("ok", "")),
        ({"body_contains": "up"}, 200, "all up", ("ok", "")),
        ({"body_contains": "up"}, 200, "down", ("critical", "body does not contain 'up'")),
        ({"body_not_contains": "error"}, 200, "an error", ("critical", "body contains 'error'")),
        ({"body_regex": r"build \d+"}, 200, "build 42", ("ok", "")),
        ({"body_regex": r"^\d+$"}, 200, "4x", ("critical", "body does not match '^\\\\d+$'")),
        ({"max_latency": "200ms"}, 200, "", ("warning", "latency 0.250s over the 0.2s objective")),
        ({"max_latency": "300ms"}, 200, "", ("ok", "")),
        # a wrong answer is critical whatever its latency
        ({"max_latency": "200ms"}, 500, "", ("critical", "status 500, expected 2xx")),
    ],
)
def test_evaluate(data: dict[str, Any], status: int, body: str, expected: tuple[str, str]) -> None:
    """Every answer here took 0.25s."""
    assert http.evaluate(check(url="http://x.example/", **data), status, body, 0.25) == expected


def test_evaluate_names_a_redirect_not_followed() -> None:
    cfg = check(url="http://x.example/", follow_redirects=False)
    assert http.evaluate(cfg, 301, "", 0.1, location="/new") == (
        "critical",
        "status 301 (redirect to /new not followed), expected 2xx",
    )


# -- against an aiohttp server ------------------------------------------------------------


@contextlib.asynccontextmanager
async def app_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """(base URL, the requests it saw) of a small app on a free loopback port."""
    seen: list[dict[str, Any]] = []

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="answer")

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="the quick brown fox, build 1234")

    async def echo(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "body": await request.text(),
            }
        )
        return web.Response(text="noted")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/text")

    async def slow(request: web.Request) -> web.Response:
        # The server is slow on purpose; the probe measures it.
        await asyncio.sleep(float(request.query["delay"]))
        return web.Response(text="late")

    async def never(request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/text", text)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    app.router.add_get("/never", never)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_ports(1)[0]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def probe_app(path: str, **data: Any) -> tuple[Outcome, list[dict[str, Any]]]:
    async def main() -> tuple[Outcome, list[dict[str, Any]]]:
        async with app_server() as (base, seen):
            return await run_probe(check(url=base + path, **data)), seen

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("path", "data", "ok", "message"),
    [
        ("/status/200", {}, True, ""),
        ("/status/503", {}, False, "status 503, expected 2xx"),
        ("/status/404", {"expect_status": [404]}, True, ""),
        ("/text", {"body_contains": "brown fox"}, True, ""),
        ("/text", {"body_contains": "red fox"}, False, "body does not contain 'red fox'"),
        ("/text", {"body_not_contains": "fox"}, False, "body contains 'fox'"),
        ("/text", {"body_regex": r"build \d{4}$"}, True, ""),
        ("/text", {"body_regex": r"build \d{5}"}, False, r"body does not match 'build \\d{5}'"),
    ],
)
def test_status_and_body(path: str, data: dict[str, Any], ok: bool, message: str) -> None:
    outcome, _ = probe_app(path, **data)
    assert (outcome.ok, outcome.message) == (ok, message)
    assert outcome.status == ("ok" if ok else "critical")
    assert outcome.status_code == (int(path.rsplit("/", 1)[1]) if "status" in path else 200)
    assert outcome.cert_expiry_days is None
    assert 0 < outcome.latency < 5


def test_method_headers_and_body_reach_the_server() -> None:
    outcome, seen = probe_app(
        "/echo", method="POST", headers={"X-Token": "s3cret"}, body="plain words"
    )
    assert outcome.ok
    [request] = seen
    assert request["method"] == "POST"
    assert request["headers"]["X-Token"] == "s3cret"
    assert request["headers"]["User-Agent"] == f"vigil/{__version__}"
    assert request["body"] == "plain words"


def test_a_user_agent_the_user_set_is_sent() -> None:
    _, seen = probe_app("/echo", headers={"user-agent": "shop-monitor/2"})
    assert seen[0]["headers"]["User-Agent"] == "shop-monitor/2"


def test_body_json_is_sent_as_json() -> None:
    outcome, seen = probe_app("/echo", method="PUT", body_json='{"probe": [1, 2]}')
    assert outcome.ok
    [request] = seen
    assert request["method"] == "PUT"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {"probe": [1, 2]}


def test_body_json_keeps_a_content_type_the_user_set() -> None:
    _, seen = probe_app(
        "/echo",
        method="POST",
        headers={"content-type": "application/vnd.api+json"},
        body_json="{}",
    )
    assert seen[0]["headers"]["Content-Type"] == "application/vnd.api+json"


def test_redirect_followed() -> None:
    outcome, _ = probe_app("/redirect", body_contains="brown fox")
    assert (outcome.ok, outcome.status_code) == (True, 200)


def test_redirect_not_followed_is_the_answer() -> None:
    outcome, _ = probe_app("/redirect", follow_redirects=False)
    assert (outcome.ok, outcome.status_code) == (False, 302)
    assert outcome.message == "status 302 (redirect to /text not followed), expected 2xx"
    outcome, _ = probe_app("/redirect", follow_redirects=False, expect_status=[302])
    assert outcome.ok


def test_slower_than_max_latency_is_a_warning() -> None:
    outcome, _ = probe_app("/slow?delay=0.3", max_latency="100ms")
    assert (outcome.ok, outcome.status, outcome.status_code) == (False, "warning", 200)
    assert outcome.latency >= 0.3
    assert outcome.message == f"latency {outcome.latency:.3f}s over the 0.1s objective"


def test_slower_than_timeout_times_out_at_the_timeout() -> None:
    outcome, _ = probe_app("/never", timeout="500ms")
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == "timed out after 0.5s"
    assert outcome.latency == pytest.approx(0.5, abs=0.25)


def test_refused() -> None:
    port = free_ports(1)[0]
    outcome = asyncio.run(run_probe(check(url=f"http://127.0.0.1:{port}/")))
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == f"connection refused by 127.0.0.1:{port}"


def test_unknown_host() -> None:
    outcome = asyncio.run(run_probe(check(url="http://no-such-host.invalid/", timeout="5s")))
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message.startswith("DNS lookup of no-such-host.invalid failed")


def test_missing_ca_file() -> None:
    outcome = asyncio.run(run_probe(check(url="https://localhost/", ca_file="/nonexistent.pem")))
    assert not outcome.ok
    assert outcome.message.startswith("cannot load ca_file /nonexistent.pem")


# -- against nginx, over http and https --------------------------------------------------


def test_nginx_plain(nginx: Nginx) -> None:
    outcome = probe_nginx(nginx, url=nginx.url("/ok"), body_contains=OK_BODY)
    assert (outcome.ok, outcome.status_code, outcome.cert) == (True, 200, {})
    outcome = probe_nginx(nginx, url=nginx.url("/missing"))
    assert (outcome.ok, outcome.status_code) == (False, 404)
    outcome = probe_nginx(nginx, url=nginx.url("/moved"), body_contains=OK_BODY)
    assert (outcome.ok, outcome.status_code) == (True, 200)
    outcome = probe_nginx(nginx, url=nginx.url("/moved"), follow_redirects=False)
    assert (outcome.ok, outcome.status_code) == (False, 301)


def probe_nginx(nginx: Nginx, **data: Any) -> Outcome:
    async def main() -> Outcome:
        try:
            return await run_probe(check(**data))
        finally:
            await nginx.disconnected()

    return asyncio.run(main())


def https(nginx: Nginx, certs: Certs, kind: str, **data: Any) -> tuple[Outcome, float]:
    """The outcome, and the days left the test computes from the certificate."""
    outcome = probe_nginx(nginx, url=nginx.https_url(kind), **data)
    return outcome, certs.days_left(kind, datetime.now(timezone.utc))


def test_valid_certificate(nginx: Nginx, certs: Certs) -> None:
    outcome, days = https(nginx, certs, "valid", ca_file=str(certs.ca), body_contains=TLS_BODY)
    assert (outcome.ok, outcome.status, outcome.message, outcome.status_code) == (
        True,
        "ok",
        "",
        200,
    )
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)
    assert dict(outcome.cert) == {
        "subject": "CN=valid test server",
        "issuer": "CN=vigil test CA",
        "not_after": certs.not_after("valid").strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def test_certificate_expiring_in_5_days_is_still_ok(nginx: Nginx, certs: Certs) -> None:
    outcome, days = https(nginx, certs, "expiring", ca_file=str(certs.ca))
    assert outcome.ok
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)
    assert outcome.cert_expiry_days == pytest.approx(5, abs=0.01)


def test_expired_certificate_fails_and_reports_negative_days(nginx: Nginx, certs: Certs) -> None:
    outcome, days = https(nginx, certs, "expired", ca_file=str(certs.ca))
    assert (outcome.ok, outcome.status, outcome.status_code) == (False, "critical", None)
    assert outcome.message == "certificate has expired (3.0 days ago)"
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)
    assert outcome.cert_expiry_days == pytest.approx(-3, abs=0.01)
    assert outcome.cert["subject"] == "CN=expired test server"


def test_wrong_name_fails_with_hostname_mismatch(nginx: Nginx, certs: Certs) -> None:
    outcome, days = https(nginx, certs, "wrong_name", ca_file=str(certs.ca))
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == "hostname mismatch: certificate is for wrong.example, *.other.example"
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)


def test_unknown_issuer_without_ca_file(nginx: Nginx, certs: Certs) -> None:
    outcome, days = https(nginx, certs, "valid")
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == "certificate issuer is unknown (not in the trusted CAs)"
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)


def test_verify_tls_false_accepts_an_expired_certificate(nginx: Nginx, certs: Certs) -> None:
    outcome, days = https(nginx, certs, "expired", verify_tls=False)
    assert (outcome.ok, outcome.status_code) == (True, 200)
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)


def test_certificate_of_an_empty_answer(nginx: Nginx, certs: Certs) -> None:
    """A 204 has no body: the certificate is still reported."""
    url = nginx.https_url("valid") + "empty"
    outcome = probe_nginx(nginx, url=url, ca_file=str(certs.ca))
    assert (outcome.ok, outcome.status_code) == (True, 204)
    days = certs.days_left("valid", datetime.now(timezone.utc))
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)


def test_concurrent_probes_each_report_their_own_certificate(nginx: Nginx, certs: Certs) -> None:
    kinds = ["valid", "expiring"] * 4

    async def main() -> list[Outcome]:
        ctx = ProbeContext()
        try:
            cfgs = [check(url=nginx.https_url(k), ca_file=str(certs.ca)) for k in kinds]
            return await asyncio.gather(*(c.probe(ctx) for c in cfgs))
        finally:
            await nginx.disconnected()

    outcomes = asyncio.run(main())
    now = datetime.now(timezone.utc)
    for kind, outcome in zip(kinds, outcomes):
        assert outcome.ok
        assert outcome.cert["subject"] == f"CN={kind} test server"
        assert outcome.cert_expiry_days == pytest.approx(
            certs.days_left(kind, now), abs=5 * SECONDS
        )


def test_https_by_ip_address(nginx: Nginx, certs: Certs) -> None:
    """The certificates name IP:127.0.0.1, so that works; wrong_name's do not."""
    url = nginx.https_url("valid", host="127.0.0.1")
    assert probe_nginx(nginx, url=url, ca_file=str(certs.ca)).ok
    url = nginx.https_url("wrong_name", host="127.0.0.1")
    outcome = probe_nginx(nginx, url=url, ca_file=str(certs.ca))
    assert outcome.message.startswith("hostname mismatch")


def test_ca_file_context_is_built_once(certs: Certs) -> None:
    async def twice() -> bool:
        first = await cert_helpers.context(True, str(certs.ca))
        return first is await cert_helpers.context(True, str(certs.ca))

    assert asyncio.run(twice())
