"""The hub's web page (issue 14, item 3) in a real browser: Debian's
chromium driven by Playwright, against a real `vigil hub run` fed by real
`vigil run` agents (and hand-made batches for what no real agent sends:
hostile host names, NaN, 1e308, clocks in 2100).

- the fleet page lists every host; a killed agent's host turns silent;
- a host page's charts hold data points (counted in the DOM);
- with a read token: the login form, a wrong token refused, the cookie
  (HttpOnly, SameSite=Strict, not the token), Bearer for plain clients,
  and a reloaded token ends old sessions;
- sorting and filtering, with and without script;
- hostile text renders as text: no dialog, the text visible;
- a screenshot of each page in the test's output directory.

Plain HTTP checks of status codes, escaping and bad parameters are at the
end. Skipped, saying why, only when /usr/bin/chromium is missing (`make
test-deps` installs it)."""

from __future__ import annotations

import math
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import Agent
from tests.e2e.test_hub_fleet import start_agent, statuses
from tests.e2e.test_hub_hostile import raw_batch
from tests.e2e.test_hub_ingest import HubProcess

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOSTILE_HOST = '"><script>alert(1)</script-ünï'.replace("/", "")  # no "/" in a host id
HOSTILE_LOG = "<script>alert('log')</script> payment failed & \"quoted\" ünïcödé"
HOSTILE_MESSAGE = "<img src=x onerror=alert(2)> failed login"

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} is missing: `make test-deps` installs Debian's chromium",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (printed, so a run shows where to look)."""
    path = tmp_path_factory.mktemp("screenshots")
    print(f"screenshots in {path}")
    return path


def hostile_batch(host: str, first: int) -> bytes:
    now = time.time()
    metric = {"kind": "metric", "type": "gauge", "ts": now}
    records = [
        {**metric, "name": "cpu_usage_percent", "labels": {"cpu": "all"}, "value": 1e308},
        {**metric, "name": "memory_used_percent", "labels": {}, "value": math.nan},
        {**metric, "name": "disk_used_percent", "labels": {"mount": "/"}, "value": -1e308},
        {**metric, "name": "load_average", "labels": {"period": "<b>1m</b>"}, "value": 1.0},
        {**metric, "name": "load_average", "labels": {"period": "15m"}, "value": math.inf},
        {**metric, "name": "load_average", "labels": {"period": "5m"}, "ts": 4102444800.0,
         "value": 2.0},  # 2100: the hub clamps it to its clock
        {"kind": "event", "type": "security", "ts": now, "severity": "high",
         "message": HOSTILE_MESSAGE, "fields": {"remote": "<svg onload=alert(3)>"}},
        {"kind": "event", "type": "log", "ts": 4102444800.0, "severity": "error",
         "message": HOSTILE_LOG, "fields": {"file": "/var/log/<x>.log"}},
    ]  # fmt: skip
    return raw_batch(host, first, records)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, dict]]:
    """A hub (silent after 4 s), three real agents at a 1 s interval, web-01
    with a hostile log line, an alert of its own and two checks (one passing,
    one failing); and a hostile host fed by hand."""
    tmp = tmp_path_factory.mktemp("fleet")
    (tmp / "hub").mkdir()
    hub = HubProcess(
        tmp / "hub", extra='silent_after = "4s"\n[hub.reports]\navailability_target = 0.995\n'
    )
    log = tmp / "app.log"
    log.write_text(HOSTILE_LOG + "\n")
    web = (
        f'[[logs]]\npaths = ["{log}"]\nstart_at = "beginning"\ndefault_rules = false\n'
        'poll_interval = "100ms"\n'
        '  [[logs.rules]]\n  name = "payment_failed"\n  pattern = "payment failed"\n'
        '[[alerts]]\nname = "MemoryPresent"\nexpr = "memory_total_bytes > 0"\n'
        'for = "0s"\nseverity = "low"\n'
        f'[[checks]]\nname = "hub-port"\ntype = "tcp"\naddress = "127.0.0.1:{hub.port}"\n'
        'interval = "1s"\n'
        '[[checks]]\nname = "closed-port"\ntype = "tcp"\naddress = "127.0.0.1:9"\n'
        'interval = "1s"\n'
    )
    agents: dict[str, Agent] = {}
    try:
        assert post(hub, HOSTILE_HOST, hostile_batch(HOSTILE_HOST, 1)) == 200
        agents["web-01"] = start_agent(tmp / "web-01", hub, "web-01", web)
        agents["db-01"] = start_agent(tmp / "db-01", hub, "db-01")
        agents["cache-01"] = start_agent(tmp / "cache-01", hub, "cache-01")
        yield hub, agents
    finally:
        for agent in agents.values():
            if agent.proc.poll() is None:
                agent.stop()
        hub.stop()


def post(hub: HubProcess, host: str, body: bytes) -> int:
    """POST a batch as `host`, its token in UTF-8 as agents send it."""
    header = f"Bearer {hub.token(host)}".encode()
    request = urllib.request.Request(
        hub.url + "/v1/ingest",
        data=body,
        headers={"Content-Encoding": "zstd", "Authorization": header},  # type: ignore[dict-item]
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return int(resp.status)


def up(hub: HubProcess, *hosts: str) -> None:
    wait_for(lambda: all(statuses(hub).get(h) == "up" for h in hosts), 60, f"{hosts} up")


def fleet_cells(page: Any) -> dict[str, list[str]]:
    """host -> its cells' text, as the fleet table shows them (visible rows only)."""
    rows = page.eval_on_selector_all(
        "#fleet tbody tr",
        "rows => rows.filter(r => !r.hidden).map("
        "r => Array.from(r.cells).map(c => c.innerText.trim()))",
    )
    return {cells[0]: cells for cells in rows}


def fleet_rows(page: Any) -> dict[str, str]:
    """host -> status, in the order shown."""
    return {host: cells[1] for host, cells in fleet_cells(page).items()}


def new_page(browser: Any, **options: Any) -> tuple[Any, Any, list[str]]:
    """A page in a fresh context, and the dialogs it opened (none, ever)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return context, page, dialogs


def path_points(page: Any, selector: str) -> list[int]:
    """Vertices of each line of the charts matched, from their SVG paths."""
    return page.eval_on_selector_all(
        selector, "els => els.map(e => (e.getAttribute('d').match(/[ML]/g) || []).length)"
    )


def test_fleet_page_lists_every_host_and_a_killed_one_turns_silent(fleet, browser, shots):
    hub, agents = fleet
    up(hub, "web-01", "db-01", "cache-01")
    context, page, dialogs = new_page(browser)
    page.goto(hub.url + "/")
    rows = fleet_rows(page)
    assert {"web-01", "db-01", "cache-01", HOSTILE_HOST} <= set(rows)
    assert rows["db-01"] == "up"
    assert page.locator(".counts .count.up b").inner_text() != "0"

    agents["cache-01"].proc.send_signal(signal.SIGKILL)
    agents["cache-01"].stop()

    def silent() -> dict[str, str] | None:
        page.reload()
        shown = fleet_rows(page)
        return shown if shown.get("cache-01") == "silent" else None

    shown = wait_for(silent, 30, "cache-01 silent on the fleet page")
    assert shown["web-01"] == "up" and shown["db-01"] == "up"

    # its HostSilent fires and shows as a firing alert on the fleet page
    def counted() -> bool:
        page.reload()
        return fleet_cells(page)["cache-01"][7] == "1"  # the Firing column

    wait_for(counted, 30, "HostSilent counted")
    page.screenshot(path=str(shots / "hub-fleet.png"))  # the viewport: what a person first sees
    assert dialogs == []
    context.close()


def test_host_page_charts_hold_data_points(fleet, browser, shots):
    hub, _ = fleet
    up(hub, "web-01")
    context, page, dialogs = new_page(browser)

    def charted() -> list[int] | None:
        page.goto(hub.url + "/hosts/web-01")
        cpu = path_points(page, "figure:has(figcaption:text-is('CPU')) path[data-points]")
        memory = path_points(page, "figure:has(figcaption:text-is('Memory used')) path")
        return cpu + memory if cpu and min(cpu) >= 3 and memory and min(memory) >= 3 else None

    points = wait_for(charted, 60, "CPU and memory charts with 3 points or more")
    assert all(n >= 3 for n in points)
    # network, disk, load: a line each at least, and its points in the DOM
    for title in ("Disk used", "Network received", "Load average"):
        counts = path_points(page, f"figure:has(figcaption:text-is('{title}')) path")
        assert counts and min(counts) >= 1, title
    assert page.locator("figure svg[data-points]").count() >= 5
    # the host's checks and its log event
    assert page.locator("#checks tbody tr").count() == 2
    assert "failing" in page.locator("#checks").inner_text()
    page.screenshot(path=str(shots / "hub-host.png"))  # the viewport: what a person first sees
    # the longer ranges read the rollups: still points
    for span in ("24h", "7d"):
        page.goto(hub.url + f"/hosts/web-01?range={span}")
        assert min(path_points(page, "figure path[data-points]")) >= 1
    assert dialogs == []
    context.close()


def test_sort_and_filter_with_and_without_script(fleet, browser):
    hub, _ = fleet
    up(hub, "web-01", "db-01")
    context, page, _ = new_page(browser)
    page.goto(hub.url + "/")
    hosts = list(fleet_rows(page))
    assert hosts == sorted(hosts)
    page.click("#fleet th[data-sort=host]")  # ascending already: now descending
    page.click("#fleet th[data-sort=host]")
    wait_for(lambda: list(fleet_rows(page)) == sorted(hosts, reverse=True), 5, "sorted desc")
    assert "order=desc" in page.url
    page.fill("[data-filter=fleet]", "db")
    wait_for(lambda: list(fleet_rows(page)) == ["db-01"], 5, "filtered to db-01")
    page.fill("[data-filter=fleet]", "")
    page.select_option("[data-filter-status=fleet]", "up")
    wait_for(lambda: set(fleet_rows(page).values()) == {"up"}, 5, "only up hosts")
    context.close()

    # without script: the links and the form, through the server
    context, page, _ = new_page(browser, java_script_enabled=False)
    page.goto(hub.url + "/?q=01&sort=host&order=desc")
    assert list(fleet_rows(page)) == sorted(
        [h for h in hosts if "01" in h and h != HOSTILE_HOST], reverse=True
    )
    page.click("#fleet th[data-sort=host] a")  # flips to ascending
    assert list(fleet_rows(page)) == sorted(h for h in hosts if "01" in h and h != HOSTILE_HOST)
    page.fill("input[name=q]", "web")
    page.click(".filter button")
    assert list(fleet_rows(page)) == ["web-01"]
    page.goto(hub.url + "/?sort=cpu&order=desc")
    assert next(iter(fleet_rows(page))) == HOSTILE_HOST  # 1e308 %: the busiest
    context.close()


def test_hostile_text_renders_as_text(fleet, browser):
    hub, _ = fleet
    wait_for(lambda: "payment failed" in http(hub.url + "/events?kind=log")[2], 30, "the log event")
    context, page, dialogs = new_page(browser)
    page.goto(hub.url + "/")
    assert page.get_by_text(HOSTILE_HOST, exact=True).count() == 1
    page.get_by_text(HOSTILE_HOST, exact=True).click()  # to its host page
    assert page.locator("h1").inner_text() == HOSTILE_HOST
    assert HOSTILE_MESSAGE in page.locator("body").inner_text()
    assert (
        "<b>1m</b>" in page.locator("figure:has(figcaption:text-is('Load average'))").inner_text()
    )
    page.goto(hub.url + "/events?kind=log&host=web-01")
    assert HOSTILE_LOG in page.locator("table.events").inner_text()
    page.goto(hub.url + "/events?q=" + urllib.request.quote("ünïcödé"))
    assert HOSTILE_LOG in page.locator("table.events").inner_text()
    assert page.locator("script:not([src])").count() == 0
    assert dialogs == []
    context.close()


def test_a_screenshot_of_every_page(fleet, browser, shots):
    hub, _ = fleet
    wait_for(lambda: "hub-port" in http(hub.url + "/checks")[2], 30, "checks on the checks page")
    wait_for(lambda: "MemoryPresent" in http(hub.url + "/alerts")[2], 30, "an alert")
    context, page, dialogs = new_page(browser)
    for name, path in (("alerts", "/alerts"), ("checks", "/checks"), ("events", "/events")):
        page.goto(hub.url + path)
        assert page.locator("h1").inner_text() == name.capitalize()
        page.screenshot(
            path=str(shots / f"hub-{name}.png")
        )  # the viewport: what a person first sees
    assert "closed-port" in page.goto(hub.url + "/checks").text()
    assert dialogs == []
    context.close()
    for name in ("alerts", "checks", "events"):
        assert (shots / f"hub-{name}.png").stat().st_size > 1000


# -- a hub with a read token -----------------------------------------------------


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[HubProcess]:
    (tmp_path / "hub").mkdir()
    token_file = tmp_path / "read.token"
    token_file.write_text("s3cret-read-token\n")
    hub = HubProcess(tmp_path / "hub", extra=f'read_token_file = "{token_file}"\n')
    hub.read_token_file = token_file  # type: ignore[attr-defined]
    try:
        assert post(hub, "web-01", hostile_batch("web-01", 1)) == 200
        yield hub
    finally:
        hub.stop()


def test_the_login_is_required_with_a_read_token(guarded, browser, shots):
    hub = guarded
    context, page, dialogs = new_page(browser)
    page.goto(hub.url + "/alerts")
    assert page.url.startswith(hub.url + "/login")
    page.screenshot(path=str(shots / "hub-login.png"))
    page.fill("input[name=token]", "wrong")
    with page.expect_response(hub.url + "/login") as answer:
        page.click("form.login button")
    assert answer.value.status == 401
    assert "not the read token" in page.locator(".error").inner_text()

    page.fill("input[name=token]", "s3cret-read-token")
    page.click("form.login button")
    page.wait_for_url(hub.url + "/alerts")  # back where it was going
    page.goto(hub.url + "/")
    assert "web-01" in fleet_rows(page)
    cookie = {c["name"]: c for c in context.cookies()}["vigil_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert "s3cret" not in cookie["value"]

    # a new read token (SIGHUP): the old session ends
    hub.read_token_file.write_text("a-new-read-token\n")  # type: ignore[attr-defined]
    hub.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: page.goto(hub.url + "/") and page.url.startswith(hub.url + "/login"),
        15,
        "the old cookie refused",
    )
    page.fill("input[name=token]", "a-new-read-token")
    page.click("form.login button")
    page.wait_for_url(hub.url + "/")
    page.click("header .logout button")
    page.wait_for_url(re.compile(".*/login.*"))
    assert dialogs == []
    context.close()


def test_bearer_works_and_strangers_are_refused(guarded):
    hub = guarded
    status, headers, body = http(hub.url + "/", token="s3cret-read-token")
    assert status == 200 and "web-01" in body
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert http(hub.url + "/checks", token="wrong")[0] == 401
    status, headers, _ = http(hub.url + "/hosts/web-01")
    assert status == 303 and headers["Location"] == "/login?next=%2Fhosts%2Fweb-01"
    # the cookie is the HMAC, not the token: the token as a cookie is refused
    assert http(hub.url + "/", cookie="vigil_session=s3cret-read-token")[0] == 303
    # the login form's body is capped; an open redirect is not followed
    big = "token=" + "x" * 10_000
    assert http(hub.url + "/login", data=big.encode())[0] == 413
    status, headers, _ = http(
        hub.url + "/login", data=b"token=s3cret-read-token&next=//evil.example/"
    )
    assert status == 303 and headers["Location"] == "/"
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    for sneaky in ("/%09/evil.example", "/%0A/evil.example", "/%0D%0ALocation:%20x"):
        status, headers, _ = http(
            hub.url + "/login", data=f"token=s3cret-read-token&next={sneaky}".encode()
        )
        assert status == 303 and headers["Location"] == "/", sneaky  # browsers drop tabs


def test_without_a_token_only_local_requests_are_served(fleet):
    hub, _ = fleet
    assert http(hub.url + "/")[0] == 200
    assert http(hub.url + "/", headers={"Host": f"localhost:{hub.port}"})[0] == 200
    # DNS rebinding (a page on another name resolved to 127.0.0.1) and proxies
    assert http(hub.url + "/", headers={"Host": "evil.example"})[0] == 403
    assert http(hub.url + "/alerts", headers={"X-Forwarded-For": "203.0.113.9"})[0] == 403
    assert http(hub.url + "/", headers={"Forwarded": "for=203.0.113.9"})[0] == 403
    assert http(hub.url + "/login")[0] == 303  # nothing to log in to
    # the JSON read API and /metrics follow the same rule
    for path in ("/v1/hosts", "/v1/alerts", "/v1/events", "/metrics"):
        assert http(hub.url + path)[0] == 200, path
        assert http(hub.url + path, headers={"Host": "evil.example"})[0] == 403, path
        assert http(hub.url + path, headers={"X-Forwarded-For": "203.0.113.9"})[0] == 403, path
    # nginx's proxy_pass with its usual headers, Host rewritten to the hub's
    for marks in (
        {"X-Real-IP": "203.0.113.9"},
        {"Via": "1.1 nginx"},
        {"X-Forwarded-Proto": "https"},
    ):
        assert http(hub.url + "/v1/hosts", headers=marks)[0] == 403, marks


# -- plain HTTP: status codes, escaping, bad parameters --------------------------


def http(
    url: str,
    token: str | None = None,
    cookie: str | None = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, str]:
    """(status, headers, body) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    request = urllib.request.Request(url, data=data, headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if cookie:
        request.add_header("Cookie", cookie)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


BAD = [
    "/?sort=nope",
    "/?order=sideways",
    "/?status=dead",
    "/?q=" + "x" * 300,
    "/hosts/web-01?range=2y",
    "/events?kind=gossip",
    "/events?since=yesterday",
    "/events?since=nan",
    "/events?until=1e999",
    "/events?cursor=not-a-cursor",
    "/alerts?cursor=bm9wZQ",
    "/events?host=" + "h" * 300,
]


def test_status_codes_escaping_and_bad_parameters(fleet):
    hub, _ = fleet
    for path in BAD:
        status, headers, body = http(hub.url + path)
        assert status == 400, (path, status)
        assert headers["Content-Type"].startswith("text/html") and "Bad request" in body
    assert http(hub.url + "/hosts/nobody")[0] == 404
    assert http(hub.url + "/hosts/" + urllib.request.quote("<script>"))[0] == 404
    assert "&lt;script&gt;" in http(hub.url + "/hosts/" + urllib.request.quote("<script>"))[2]
    assert http(hub.url + "/static/../app.py")[0] == 404
    assert http(hub.url + "/static/vigil.js")[0] == 200
    assert http(hub.url + "/events?since=2026-01-01T00:00&until=4102444800")[0] == 200
    host_page = "/hosts/" + urllib.request.quote(HOSTILE_HOST, safe="")
    for path in ("/", host_page, "/events", "/alerts", "/checks", "/events?q=%3Cscript"):
        status, _, body = http(hub.url + path)
        assert status == 200, path
        for raw in ("<script>alert", "<img src=x", "<svg onload", "<b>1m</b>"):
            assert raw not in body, (path, raw)
    body = http(hub.url + host_page)[2]
    assert "&lt;script&gt;alert(1)" in body and "&lt;img src=x onerror=alert(2)&gt;" in body
    assert "NaN" not in body and "inf %" not in body  # shown as a dash
    assert http(hub.url + "/events?q=%3Cscript")[2].count("&lt;script&gt;alert(&#x27;log") >= 1


def test_the_events_page_leaves_check_runs_out_unless_asked(fleet):
    hub, _ = fleet
    # the closed-port check fails every run: its runs and its "failed" event are stored
    wait_for(lambda: "check closed-port failed" in http(hub.url + "/events?kind=check")[2], 30)
    runs = http(hub.url + "/events?kind=check")[2]
    assert "check hub-port ok in" in runs  # a run, shown with kind=check
    default = http(hub.url + "/events")[2]
    assert "check hub-port ok in" not in default and "check closed-port failed in" not in default
    assert "check closed-port failed:" in default  # the transition event stays
    assert "any kind but check runs" in default


def test_the_checks_target_is_the_configured_one_on_every_page(fleet):
    hub, _ = fleet
    wait_for(lambda: "hub-port" in http(hub.url + "/checks")[2], 30, "the checks at the hub")
    for path in ("/checks", "/hosts/web-01"):
        body = http(hub.url + path)[2]
        assert "99.500 %" in body and "99.900 %" not in body, path  # [hub.reports]
