"""The certificates page with 5,000 certificates in headless Chromium: every row is there with the
facts of `certsync list --output json`, and the filters show exactly the right rows. How fast it
renders and filters is measured by bench/dashboard.py (no timed assertion here)."""

from __future__ import annotations

import json

import pytest

from tests.support import dashboard

N = 5000


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    dashboard.have_chromium_or_skip()
    with dashboard.scale_server(tmp_path_factory.mktemp("dashboard-scale"), N) as server:
        secret = server.token("viewer", "read")
        listed = json.loads(server.cli("list", "--output", "json").stdout)["certificates"]
        driver = dashboard.browser()
        try:
            dashboard.sign_in(driver, server, secret, "/dashboard/certificates")
            yield server, driver, listed
        finally:
            driver.quit()


def visible(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#certificates tbody tr:not([hidden])')).map(r => r.dataset.name)"
    )


def test_all_5000_rows_render_with_the_listed_facts(scaled):
    server, driver, listed = scaled
    assert len(listed) == N
    rows = driver.execute_script("""
        return Array.from(document.querySelectorAll('#certificates tbody tr')).map(
          tr => [tr.dataset.name, tr.dataset.state, tr.dataset.serial])""")
    assert rows == [[c["name"], c["state"], c["serial"]] for c in listed]
    assert driver.find_element("id", "shown").text == str(N)
    assert visible(driver) == [c["name"] for c in listed][:200]  # the first 200 laid out, the rest hidden
    assert driver.find_element("id", "drawn").text == "200"


def test_filters_pick_exactly_the_right_rows_among_5000(scaled):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server, driver, listed = scaled
    profile = Select(driver.find_element("id", "f-profile"))
    profile.select_by_value("short")
    WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "shown").text == str(N // 10))
    short = [c["name"] for i, c in enumerate(listed) if i % 10 == 0]
    assert visible(driver) == short[:200]
    driver.find_element("id", "show-all").click()  # lift the cap: every match
    WebDriverWait(driver, 30).until(lambda d: len(visible(d)) == len(short))
    assert visible(driver) == short
    assert not driver.find_element("id", "capped").is_displayed()
    dashboard.load(driver, server.url + "/dashboard/certificates")  # the cap again (and a fresh form)
    search = driver.find_element("id", "f-q")
    search.send_keys("c0001" + Keys.ENTER)  # Enter applies at once (the script's filter, or the form's GET)
    # the search matches names and serials: a random serial may hold "c0001" too (1 run in 6 at 5,000)
    expected = [c["name"] for c in listed if "c0001" in c["name"] or "c0001" in c["serial"].lower()]
    assert {f"c0001{i}" for i in range(10)} <= set(expected)
    WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "shown").text == str(len(expected)))
    assert visible(driver) == expected[:200]
    assert driver.current_url.endswith("/dashboard/certificates?q=c0001")


def test_without_script_the_server_caps_and_show_all_lifts_it(scaled):
    import urllib.request

    server, driver, listed = scaled
    secret = driver.get_cookie("certsync_dashboard")["value"]
    for query, drawn in (("profile=short", 200), ("profile=short&all=1", N // 10)):
        request = urllib.request.Request(
            f"{server.url}/dashboard/certificates?{query}", headers={"Cookie": f"certsync_dashboard={secret}"}
        )
        with urllib.request.urlopen(request, timeout=120) as reply:
            body = reply.read().decode()
        assert body.count("<tr data-name=") == N and body.count(" hidden><th") == N - drawn


def test_the_overview_draws_5000_lanes(scaled):
    server, driver, listed = scaled

    dashboard.load(driver, server.url + "/dashboard/")
    assert driver.execute_script("return document.querySelectorAll('figure.timeline g.lane.certificate').length") == N
