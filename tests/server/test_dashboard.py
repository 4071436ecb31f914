"""The dashboard in a real browser: headless Debian Chromium (Selenium, /usr/bin/chromedriver)
against a real `certsync serve` over a store with certificates fresh, expiring, revoked and with a
stale copy, and foreign certificates found by `certsync discover`. The pages must show what
`certsync list --output json` (and `list --discovered`) says. One server and one browser session
for the module; screenshots go to the test's tmp dir."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime

import pytest

from tests.support import dashboard, tls_endpoints

pytestmark = pytest.mark.usefixtures("chromium")
PAGES = [
    "/dashboard/",
    "/dashboard/certificates",
    "/dashboard/certificates/stale-web",
    "/dashboard/discovery",
    "/dashboard/activity",
]


@pytest.fixture(scope="module")
def chromium():
    dashboard.have_chromium_or_skip()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    endpoints = tls_endpoints.Servers()
    running = dashboard.seeded_server(tmp_path_factory.mktemp("dashboard"), endpoints)
    try:
        with running:
            issuer = running.token("issuer", "issue")  # one issuance through the API: activity
            reply = http(
                running,
                "POST",
                "/api/v1/certificates",
                json.dumps({"name": "api-made", "dns_names": ["made.example.internal"]}).encode(),
                headers={"Authorization": f"Bearer {issuer}", "Content-Type": "application/json"},
            )
            assert reply[0] == 201, reply
            running.reader = running.token("viewer", "read")
            running.listed = dashboard.listed(running)
            running.discovered = dashboard.discovered(running)
            yield running
    finally:
        endpoints.close()


@pytest.fixture(scope="module")
def browser(server, chromium):
    driver = dashboard.browser()
    try:
        driver.get(server.url + "/dashboard/certificates")
        driver.find_element("id", "token").send_keys(server.reader)
        driver.find_element("css selector", "form.login button").click()
        wait_for(driver, lambda d: d.current_url.endswith("/dashboard/certificates"))
        yield driver
    finally:
        driver.quit()


def http(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def wait_for(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def open_page(driver, server, path: str):
    dashboard.load(driver, server.url + path)


def minute(rfc3339: str) -> str:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")


# -- refused without a reader ----------------------------------------------------------------------
def test_unauthenticated_requests_get_401_and_no_data(server):
    for path in PAGES:
        status, headers, body = http(server, "GET", path)
        assert status == 401, path
        assert 'name="token"' in body and "<table" not in body and "fresh-api" not in body
        assert not any(c["serial"] in body for c in server.listed["certificates"])
        assert headers["www-authenticate"].startswith("Bearer")
    status, _, body = http(server, "GET", "/dashboard/", headers={"Cookie": "certsync_dashboard=cst_madeup"})
    assert status == 401 and "cst_madeup" not in body and "fresh-api" not in body


def test_sign_in_sets_a_strict_httponly_cookie_and_refusals_never_echo_the_token(server):
    origin = {"Origin": server.url, "Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = http(
        server, "POST", "/dashboard/login", f"token={server.reader}&next=/dashboard/discovery".encode(), origin
    )
    assert status == 303 and headers["location"] == "/dashboard/discovery"
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"certsync_dashboard={server.reader};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; under TLS it is Secure (test below)
    wrong = "cst_" + "x" * 43
    status, _, body = http(server, "POST", "/dashboard/login", f"token={wrong}".encode(), origin)
    assert status == 401 and wrong not in body and "unknown token" in body
    issuer_only = server.token("no-read", "issue")
    status, _, body = http(server, "POST", "/dashboard/login", f"token={issuer_only}".encode(), origin)
    assert status == 403 and issuer_only not in body and "read" in body
    status, _, _ = http(
        server,
        "POST",
        "/dashboard/login",
        f"token={server.reader}".encode(),
        {**origin, "Origin": "http://evil.example"},
    )
    assert status == 403
    status, _, _ = http(
        server, "POST", "/dashboard/login", f"token={server.reader}&next=https://evil.example/".encode(), origin
    )
    assert status == 303


def test_a_revoked_token_ends_its_session(server):
    secret = server.token("short-lived", "read")
    cookie = {"Cookie": f"certsync_dashboard={secret}"}
    assert http(server, "GET", "/dashboard/", headers=cookie)[0] == 200
    server.cli("token", "revoke", "short-lived")
    status, _, body = http(server, "GET", "/dashboard/", headers=cookie)
    assert status == 401 and "revoked" in body and secret not in body


# -- the same facts as `certsync list --output json` --------------------------------------------------
def test_certificates_table_matches_list(browser, server, tmp_path):
    open_page(browser, server, "/dashboard/certificates")
    rows = browser.execute_script("""
        return Array.from(document.querySelectorAll('#certificates tbody tr')).map(tr => ({
          name: tr.dataset.name, state: tr.dataset.state, cells: Array.from(tr.cells).map(c => c.innerText.trim()),
          serial: tr.dataset.serial, copies: Array.from(tr.querySelectorAll('li.copy')).map(li => li.className + ' ' + li.innerText)}))""")
    listed = server.listed["certificates"]
    assert [r["name"] for r in rows] == [c["name"] for c in listed]
    for row, fact in zip(rows, listed):
        name, profile, ca, state, version, serial, not_after, days, in_sync, _copies = row["cells"]
        assert (name, state, int(version), row["serial"]) == (
            fact["name"],
            fact["state"],
            fact["version"],
            fact["serial"],
        )
        assert not_after == minute(fact["not_after"])
        assert float(days) == pytest.approx(fact["days_left"], abs=0.11)
        assert in_sync == f"{fact['destinations_in_sync']}/{fact['destinations']}"
    copies = {r["name"]: sorted(r["copies"]) for r in rows}
    assert copies["stale-web"] == ["copy in-sync aws-prod ✓ v2", "copy stale aws-dr stale v1"]
    assert copies["fresh-api"] == ["copy in-sync aws-dr ✓ v1", "copy in-sync aws-prod ✓ v1"]
    assert copies["revoked-old"] == ["copy revoked aws-prod revoked v1"]
    assert browser.find_element("id", "shown").text == str(len(listed))
    browser.save_screenshot(str(tmp_path / "certificates.png"))
    assert (tmp_path / "certificates.png").stat().st_size > 10_000


def test_timeline_draws_every_certificate_and_ca_with_its_renewal_window(browser, server, tmp_path):
    open_page(browser, server, "/dashboard/")
    lanes = browser.execute_script("""
        return Array.from(document.querySelectorAll('figure.timeline g.lane')).map(g => ({
          name: g.dataset.name, notAfter: g.dataset.notAfter, renew: g.dataset.renewFrom || null,
          kind: g.classList.contains('ca') ? 'ca' : 'certificate', renewBar: !!g.querySelector('rect.renew'),
          width: g.querySelector('rect.life').getBoundingClientRect().width}))""")
    by_name = {lane["name"]: lane for lane in lanes}
    listed = server.listed
    assert sorted(by_name) == sorted(
        [c["name"] for c in listed["certificates"]] + [f"CA {ca['name']}" for ca in listed["cas"]]
    )
    for fact in listed["certificates"]:
        lane = by_name[fact["name"]]
        assert minute(lane["notAfter"]) == minute(fact["not_after"])
        assert lane["width"] > 0
        assert lane["renewBar"] == (fact["state"] == "active" and fact["name"] != "api-made")  # api-made: no config
    for ca in listed["cas"]:
        assert minute(by_name[f"CA {ca['name']}"]["notAfter"]) == minute(ca["not_after"])
    counts = {k: browser.find_element("id", f"count-{k}").text for k in ("certificates", "revoked", "stale")}
    assert counts == {"certificates": str(len(listed["certificates"])), "revoked": "1", "stale": "1"}
    browser.save_screenshot(str(tmp_path / "overview.png"))


def test_filters_in_the_browser_and_on_the_server_agree(browser, server):
    from selenium.webdriver.support.ui import Select

    cases = [
        ({"state": "revoked"}, {"revoked-old"}),
        ({"destination": "aws-dr"}, {"fresh-api", "stale-web"}),
        ({"expiring": "7"}, {"expiring-cache"}),
        ({"profile": "short"}, {"expiring-cache"}),
        ({"q": "stale"}, {"stale-web"}),
    ]
    for query, expected in cases:
        open_page(browser, server, "/dashboard/certificates")
        for key, value in query.items():
            if key == "q":
                browser.find_element("id", "f-q").send_keys(value)
            else:
                Select(browser.find_element("id", f"f-{key}")).select_by_value(value)
        wait_for(browser, lambda d: int(d.find_element("id", "shown").text) == len(expected))
        visible = set(
            browser.execute_script(
                "return Array.from(document.querySelectorAll('#certificates tbody tr:not([hidden])')).map(r => r.dataset.name)"
            )
        )
        assert visible == expected, query
        # without script: the same query answered by the server
        url = "/dashboard/certificates?" + "&".join(f"{k}={v}" for k, v in query.items())
        status, _, body = http(server, "GET", url, headers={"Cookie": f"certsync_dashboard={server.reader}"})
        assert status == 200 and f'<span id="shown">{len(expected)}</span>' in body


def test_certificate_page_shows_its_facts_versions_copies_and_commands(browser, server, tmp_path):
    fact = next(c for c in server.listed["certificates"] if c["name"] == "stale-web")
    open_page(browser, server, "/dashboard/certificates/stale-web")
    text = {
        key: browser.find_element("id", f"f-{key}").text
        for key in ("state", "version", "serial", "sans", "not-after", "key", "in-sync", "revocation", "renew")
    }
    assert text["state"] == "active" and text["version"] == str(fact["version"]) and text["serial"] == fact["serial"]
    assert text["not-after"] == minute(fact["not_after"]) and text["sans"] == "DNS:www.example.internal"
    assert text["in-sync"] == f"{fact['destinations_in_sync']}/{fact['destinations']}"
    assert text["key"].startswith("ec-secp256r1") and text["revocation"] == "not revoked"
    assert text["renew"] != "not scheduled"
    versions = browser.find_elements("css selector", "#versions tbody tr")
    assert [v.find_elements("tag name", "td")[2].text for v in versions] == ["active", "superseded"]
    copies = {
        tr.find_elements("tag name", "td")[0].text: tr.get_attribute("class")
        for tr in browser.find_elements("css selector", "#copies tbody tr")
    }
    assert copies == {"aws-dr": "copy stale", "aws-prod": "copy in-sync"}
    assert len(browser.find_elements("css selector", "#chain > li")) == 3
    commands = browser.find_element("id", "commands").text
    assert "certsync renew stale-web" in commands and "certsync revoke stale-web" in commands
    forms = browser.find_elements("tag name", "form")
    assert [f.get_attribute("action").rsplit("/", 1)[1] for f in forms] == ["logout"]  # no write action
    browser.save_screenshot(str(tmp_path / "certificate.png"))

    open_page(browser, server, "/dashboard/certificates/revoked-old")
    assert browser.find_element("id", "f-state").text == "revoked"
    assert "keyCompromise" in browser.find_element("id", "f-revocation").text
    open_page(browser, server, "/dashboard/certificates/no-such-thing")
    assert "no certificate" in browser.find_element("tag name", "main").text


def test_discovery_page_matches_list_discovered(browser, server, tmp_path):
    open_page(browser, server, "/dashboard/discovery")
    rows = browser.execute_script("""
        return Array.from(document.querySelectorAll('#discovered tbody tr')).map(tr => ({
          fp: tr.dataset.fingerprint, problems: Array.from(tr.querySelectorAll('.problem')).map(p => p.innerText),
          managed: tr.cells[5].innerText, seen: Array.from(tr.querySelectorAll('.locations code')).map(c => c.innerText),
          adopt: tr.cells[8].innerText}))""")
    assert [r["fp"] for r in rows] == [f["fingerprint"] for f in server.discovered]
    for row, found in zip(rows, server.discovered):
        assert row["problems"] == found["problems"]
        assert row["managed"] == ("yes" if found["managed"] else "no")
        assert row["seen"] == [loc["location"] for loc in found["locations"]]
        assert ("certsync adopt " + found["fingerprint"] in row["adopt"]) == (not found["managed"])
    legacy = next(r for r in rows if r["managed"] == "no")
    assert {"expiring", "weak-key", "untrusted"} <= set(legacy["problems"])
    browser.save_screenshot(str(tmp_path / "discovery.png"))


def test_activity_shows_the_audit_trail(browser, server):
    open_page(browser, server, "/dashboard/activity")
    actions = [tr.find_elements("tag name", "td")[1].text for tr in browser.find_elements("css selector", "tbody tr")]
    assert "issue" in actions and "token.create" in actions and "token.revoke" in actions
    audit = json.loads(server.cli("audit", "--output", "json").stdout)["events"]
    shown = [e["action"] for e in audit if not (e["action"] == "token.use" and e["outcome"] == "ok")]
    assert actions[:10] == shown[:10]


def test_keyboard_and_labels(browser, server):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server, "/dashboard/certificates")
    browser.find_element("tag name", "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("class") == "skip"
    unlabelled = browser.execute_script("""
        return Array.from(document.querySelectorAll('input:not([type=hidden]), select')).filter(
          el => !document.querySelector('label[for="' + el.id + '"]')).map(el => el.name)""")
    assert unlabelled == []
    assert browser.execute_script("return document.querySelectorAll('#certificates thead th[scope=col]').length") == 10
    assert browser.find_element("css selector", "nav a[aria-current=page]").text == "Certificates"


def test_sign_out_clears_the_cookie(browser, server):
    open_page(browser, server, "/dashboard/")
    browser.find_element("css selector", "form.who button").click()
    wait_for(browser, lambda d: d.current_url.endswith("/dashboard/login"))
    assert browser.get_cookies() == []
    open_page(browser, server, "/dashboard/certificates")
    assert browser.find_elements("id", "token") and not browser.find_elements("id", "certificates")
