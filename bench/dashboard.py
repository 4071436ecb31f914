#!/usr/bin/env python3
"""How fast the dashboard's certificates page renders and filters with N certificates (default
5,000), measured by the browser itself (headless Debian Chromium, Selenium).

    .venv/bin/python bench/dashboard.py [--n 5000] [--runs 5]

A temp folder with N certificates issued by `certsync apply` (every tenth from a 6-day profile),
`certsync serve` on a free loopback port, a `read` token signed in through the login form. Then,
for each run, /dashboard/certificates and /dashboard/ are loaded and these are read from the
page's Navigation Timing entry (performance.getEntriesByType("navigation")):

  * server: requestStart -> responseStart (the server gathers the facts and renders the HTML);
  * page: startTime -> loadEventEnd (request, transfer, parse, style and layout: the page shown);

and one filtering pass of the table (the profile filter, then back to "any") is timed with
performance.now() around the page's own filter function plus the next animation frame (the
browser has laid the table out again). Medians over the runs. The last line: each figure over
the 1 s budget (target: well under 1, i.e. ratios < 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import dashboard  # noqa: E402

NAVIGATION = """
const n = performance.getEntriesByType('navigation')[0];
return {server: n.responseStart - n.requestStart, page: n.loadEventEnd - n.startTime,
        bytes: n.transferSize, rows: document.querySelectorAll('#certificates tbody tr, g.lane').length};
"""
FILTER = """
const done = arguments[arguments.length - 1];
const select = document.getElementById(arguments[0]);
select.value = arguments[1];
const started = performance.now();
window.certsyncFilter();
requestAnimationFrame(() => setTimeout(() => done({ms: performance.now() - started,
                                                   shown: document.getElementById('shown').textContent}), 0));
"""


def load(driver, url: str) -> dict:
    """Navigate, wait for the load event to have finished, read the navigation timing."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 120).until(
        lambda d: d.execute_script(
            "const n = performance.getEntriesByType('navigation')[0]; return n && n.loadEventEnd > 0"
        )
    )
    return driver.execute_script(NAVIGATION)


def measure(n: int, runs: int) -> dict:
    if not dashboard.chromium_available():
        raise SystemExit(
            f"bench: needs {dashboard.CHROMIUM} and {dashboard.CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        )
    with tempfile.TemporaryDirectory(prefix="certsync-dashboard-bench-") as folder:
        with dashboard.scale_server(Path(folder), n) as server:
            secret = server.token("bench", "read")
            driver = dashboard.browser()
            try:
                dashboard.sign_in(driver, server, secret, "/dashboard/certificates")
                figures: dict[str, list[float]] = {
                    k: []
                    for k in ("table_server", "table_page", "overview_server", "overview_page", "filter", "unfilter")
                }
                for _ in range(runs):
                    table = load(driver, server.url + "/dashboard/certificates")
                    if table["rows"] != n:
                        raise SystemExit(f"bench: the table has {table['rows']} rows, not {n}")
                    figures["table_server"].append(table["server"])
                    figures["table_page"].append(table["page"])
                    narrowed = driver.execute_async_script(FILTER, "f-profile", "short")
                    widened = driver.execute_async_script(FILTER, "f-profile", "")
                    if int(narrowed["shown"]) != len(range(0, n, 10)) or int(widened["shown"]) != n:
                        raise SystemExit(f"bench: the filter showed {narrowed['shown']} and {widened['shown']} rows")
                    figures["filter"].append(narrowed["ms"])
                    figures["unfilter"].append(widened["ms"])
                    overview = load(driver, server.url + "/dashboard/")
                    figures["overview_server"].append(overview["server"])
                    figures["overview_page"].append(overview["page"])
                size = table["bytes"]
            finally:
                driver.quit()
    return {"n": n, "bytes": size, **{k: statistics.median(v) for k, v in figures.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="certificates (default 5000)")
    parser.add_argument("--runs", type=int, default=5, help="page loads measured (default 5; medians)")
    args = parser.parse_args()
    if not 1 <= args.n <= 20000 or not 1 <= args.runs <= 50:
        parser.error("--n: 1 to 20000; --runs: 1 to 50")
    found = measure(args.n, args.runs)
    print(
        f"dashboard with {found['n']} certificates, medians of {args.runs} runs in headless Chromium "
        f"(table page {found['bytes'] / 2**20:.1f} MiB transferred)"
    )
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in found.items()}))
    print(f"{'':22}{'ms':>8}")
    for key, label in (
        ("table_server", "table: server"),
        ("table_page", "table: page loaded"),
        ("filter", "filter (narrow)"),
        ("unfilter", "filter (back to all)"),
        ("overview_server", "overview: server"),
        ("overview_page", "overview: page loaded"),
    ):
        print(f"{label:22}{found[key]:8.0f}")
    print(
        f"ratio against 1 s: table page {found['table_page'] / 1000:.2f}, filter "
        f"{max(found['filter'], found['unfilter']) / 1000:.2f}, overview page {found['overview_page'] / 1000:.2f} "
        f"(target < 1)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
