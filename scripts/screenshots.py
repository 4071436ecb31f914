#!/usr/bin/env python3
"""Screenshots of the dashboard for the README and docs/dashboard.md, taken in headless Debian
Chromium against the same demo store the browser tests use (tests/support/dashboard.py):

    .venv/bin/python scripts/screenshots.py [--out docs/img]

writes dashboard-overview.png, dashboard-certificates.png, dashboard-certificate.png,
dashboard-discovery.png and dashboard-login.png. Needs /usr/bin/chromium and /usr/bin/chromedriver
(apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import dashboard, tls_endpoints  # noqa: E402

SHOTS = [
    ("dashboard-overview.png", "/dashboard/"),
    ("dashboard-certificates.png", "/dashboard/certificates"),
    ("dashboard-certificate.png", "/dashboard/certificates/stale-web"),
    ("dashboard-discovery.png", "/dashboard/discovery"),
]
WIDTH, MAX_HEIGHT = 1280, 1300


def shoot(driver, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    # the whole page, up to MAX_HEIGHT (a device-metrics override: the window's size includes its frame)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": min(max(height, 500), MAX_HEIGHT), "deviceScaleFactor": 1, "mobile": False},
    )
    driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"), help="folder for the PNGs (default docs/img)")
    out = Path(parser.parse_args().out).resolve()
    if not dashboard.chromium_available():
        raise SystemExit(f"screenshots: needs {dashboard.CHROMIUM} and {dashboard.CHROMEDRIVER}")
    out.mkdir(parents=True, exist_ok=True)
    endpoints = tls_endpoints.Servers()
    with tempfile.TemporaryDirectory(prefix="certsync-screenshots-") as folder:
        server = dashboard.seeded_server(Path(folder), endpoints)
        try:
            with server:
                secret = server.token("viewer", "read")
                issuer = server.token("ci-pipeline", "issue")
                _api_issue(server, issuer)
                driver = dashboard.browser(WIDTH, 800)
                try:
                    driver.get(server.url + "/dashboard/")
                    shoot(driver, out / "dashboard-login.png")
                    dashboard.sign_in(driver, server, secret)
                    for name, path in SHOTS:
                        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
                        driver.get(server.url + path)
                        shoot(driver, out / name)
                finally:
                    driver.quit()
        finally:
            endpoints.close()
    return 0


def _api_issue(server, secret: str) -> None:
    """One issuance through the REST API, so that the activity has an entry of each kind."""
    import urllib.request

    request = urllib.request.Request(
        server.url + "/api/v1/certificates",
        method="POST",
        data=json.dumps({"name": "ci-runner", "dns_names": ["ci.example.internal"]}).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        reply.read()


if __name__ == "__main__":
    sys.exit(main())
