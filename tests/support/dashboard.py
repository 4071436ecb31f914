"""A store worth looking at, for the dashboard's browser tests, its screenshots and its benchmark:
certificates fresh, expiring, revoked and with a stale copy (a push that failed left a destination
on the old version), pushed by certsync's own apply/renew/revoke to in-memory destinations
(standing in for AWS; the server itself never calls a cloud), and foreign certificates found by
`certsync discover` on a local TLS endpoint and in a folder.

Also a headless Chromium from Debian (/usr/bin/chromium + /usr/bin/chromedriver) driven by
Selenium, given the driver's path so that Selenium Manager never downloads anything.
"""

from __future__ import annotations

import json
import os

from datetime import timedelta
from pathlib import Path

from tests.support import tls_endpoints
from tests.support.memory import MemoryCloud, MemoryProvider
from tests.support.server import CertsyncServer

CHROMIUM = os.environ.get("CERTSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CERTSYNC_CHROMEDRIVER", "/usr/bin/chromedriver")

DESTINATIONS = """
[destination.aws-prod]
provider = "aws"
region = "eu-west-1"

[destination.aws-dr]
provider = "aws"
region = "eu-central-1"

[profile.short]
ca = "issuing"
allowed_domains = ["*.example.internal"]
validity = "6d"
renew_before = "2d"
"""

CERTIFICATES = """
[certificate.fresh-api]
profile = "web"
common_name = "api.example.internal"
dns_names = ["api.example.internal", "api2.example.internal"]
destinations = ["aws-prod", "aws-dr"]

[certificate.expiring-cache]
profile = "short"
dns_names = ["cache.example.internal"]
destinations = ["aws-prod"]

[certificate.revoked-old]
profile = "web"
dns_names = ["old.example.internal"]
destinations = ["aws-prod"]

[certificate.stale-web]
profile = "web"
dns_names = ["www.example.internal"]
destinations = ["aws-prod", "aws-dr"]
"""


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def browser(width: int = 1280, height: int = 900):
    """A headless Chromium session (Selenium) on the Debian binaries."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never fetch a driver
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def app_for(server: CertsyncServer, clouds: dict[str, MemoryCloud]):
    from sync import config
    from sync.app import App

    made: dict[str, MemoryProvider] = {}

    def provider(destination: str) -> MemoryProvider:
        if destination not in made:
            made[destination] = MemoryProvider(clouds.setdefault(destination, MemoryCloud()), destination=destination)
        return made[destination]

    app = App(config.load(server.config), providers=provider)
    return app, made


def seed(server: CertsyncServer, endpoints: tls_endpoints.Servers) -> None:
    """Issue and push, renew with one destination down, revoke, and discover foreign certificates."""
    clouds: dict[str, MemoryCloud] = {}
    app, made = app_for(server, clouds)
    try:
        report = app.apply()
        assert not report.failed, report
        made["aws-dr"].fail = True  # the DR copy of stale-web stays on version 1
        app.renew("stale-web")
        made["aws-dr"].fail = False
        app.revoke("revoked-old", "keyCompromise")  # its copy now holds a revoked version
    finally:
        app.close()
    _discovered(server, endpoints)


def _discovered(server: CertsyncServer, endpoints: tls_endpoints.Servers) -> None:
    """A weak self-signed certificate expiring in 5 days on a TLS endpoint (untrusted, weak key,
    expiring), and one of ours (fresh-api) in a folder (managed)."""
    now = tls_endpoints.NOW
    foreign = tls_endpoints.make(
        "legacy.example.internal",
        sans=["legacy.example.internal"],
        not_before=now - timedelta(days=360),
        not_after=now + timedelta(days=5),
        key=tls_endpoints.rsa_key(1024),
    )
    cert, key = tls_endpoints.write_chain(server.folder, "legacy", [foreign])
    (port,) = endpoints.start([tls_endpoints.server_context(cert, key)])
    found = server.folder / "found"
    found.mkdir(exist_ok=True)
    exported = json.loads(server.cli("export", "fresh-api", "--format", "json").stdout)
    (found / "fresh-api.pem").write_text(exported["certificate"])
    server.cli("discover", "--tls", f"127.0.0.1:{port}", "--files", str(found))


def seeded_server(
    folder: Path, endpoints: tls_endpoints.Servers, *, server_toml: str = "rate_limit = 0"
) -> CertsyncServer:
    server = CertsyncServer(folder, server_toml=server_toml, extra_toml=DESTINATIONS + CERTIFICATES)
    seed(server, endpoints)
    return server


def listed(server: CertsyncServer) -> dict:
    """`certsync list --output json`: what the pages must agree with."""
    return json.loads(server.cli("list", "--output", "json").stdout)


def discovered(server: CertsyncServer) -> list[dict]:
    return json.loads(server.cli("list", "--discovered", "--output", "json").stdout)["discovered"]


def have_chromium_or_skip():
    import pytest

    if not chromium_available():
        pytest.skip(
            f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver; "
            "scripts/test.sh installs them)"
        )


def scale_toml(n: int) -> str:
    """n certificates for the 5,000-row checks: every tenth from the 6-day profile `short`."""
    lines = [
        "[profile.short]",
        'ca = "issuing"',
        'allowed_domains = ["*.example.internal"]',
        'validity = "6d"',
        'renew_before = "2d"',
    ]
    for i in range(n):
        profile = "short" if i % 10 == 0 else "web"
        lines.append(f'[certificate.c{i:05d}]\nprofile = "{profile}"\ndns_names = ["c{i:05d}.example.internal"]')
    return "\n".join(lines) + "\n"


def scale_server(folder: Path, n: int = 5000) -> CertsyncServer:
    """A server over n certificates issued by `certsync apply` (no destinations: the table's cost)."""
    return CertsyncServer(folder, server_toml="rate_limit = 0", extra_toml=scale_toml(n), apply=True, start_timeout=120)


def sign_in(driver, server: CertsyncServer, secret: str, path: str = "/dashboard/") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server.url + path)
    driver.find_element("id", "token").send_keys(secret)
    # the sign-in page is complete already and has the same address: wait for the page after it
    driver.execute_script("window.certsyncPageBefore = true")
    driver.find_element("css selector", "form.login button").click()
    WebDriverWait(driver, 60).until(
        lambda d: (
            d.current_url.endswith(path)
            and d.execute_script("return !window.certsyncPageBefore && document.readyState === 'complete'")
        )
    )


def load(driver, url: str, timeout: float = 60) -> None:
    """driver.get(url), then wait for the new document to be complete. driver.get can return before
    a very large page has loaded, and the page before it (complete already) must not pass for it."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.certsyncPageBefore = true")
    driver.get(url)
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return !window.certsyncPageBefore && document.readyState === 'complete'")
    )
