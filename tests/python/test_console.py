"""The web console (issue 23) in a real headless Chromium: log in, watch the
demo source's rate move, open a table, run a query and see its chart,
compact a table as admin and see it finish, and a read-only user cannot;
see alerts fire, acknowledge one as admin, and a read-only user cannot.
Needs Debian chromium + chromium-driver (tests/scripts/chromium.sh install,
called by tests/run.sh); a missing browser fails the tests."""

from __future__ import annotations

from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pytest
from selenium.webdriver.common.by import By

from console_browser import api, chrome, find, http_port, login, text_of, wait
from mqtt_harness import Mosquitto, wait_log
from weir_harness import WeirServer, execute, hash_password

PASSWORDS = {"boss": "b-secret", "reader": "r-secret", "writer": "w-secret"}
ROLES = {"boss": "admin", "reader": "read", "writer": "write"}


@pytest.fixture(scope="module")
def browser():
    driver = chrome()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Authentication off (loopback, no users): everyone is admin."""
    server = WeirServer(
        tmp_path_factory.mktemp("console-demo") / "data",
        ["--http-listen", "127.0.0.1:0", "--demo", "--demo-devices", "3", "--demo-interval-ms", "200"],
    )
    yield server, f"http://127.0.0.1:{http_port(server)}"
    server.discard()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """Users configured: login required; boss is admin, reader reads."""
    users = ";".join(f"{n}:{ROLES[n]}:{hash_password(p)}" for n, p in PASSWORDS.items())
    server = WeirServer(
        tmp_path_factory.mktemp("console-auth") / "data",
        ["--http-listen", "127.0.0.1:0", "--users", users],
    )
    conn = flightsql.connect(
        server.uri, db_kwargs={"username": "boss", "password": PASSWORDS["boss"]}, autocommit=True
    )
    execute(conn, "CREATE TABLE small_files (id INT, name VARCHAR)")
    for i in range(6):
        execute(conn, f"INSERT INTO small_files VALUES ({i}, 'row {i}')")
    conn.close()
    yield server, f"http://127.0.0.1:{http_port(server)}"
    server.discard()


def fact(browser, name: str) -> str:
    """The value next to ``name`` in a table's facts."""
    return browser.execute_script(
        """for (const dt of document.querySelectorAll('[data-testid=facts] dt'))
             if (dt.textContent === arguments[0]) return dt.nextElementSibling.textContent;
           return null;""", name) or ""


def number(text: str) -> float:
    return float(text.replace(",", "")) if text.strip() not in ("", "–") else -1.0


def test_demo_source_rate_moves(browser, demo):
    _, base = demo
    browser.get(base + "/")
    # Authentication is off: no login form, the user is an admin.
    wait(browser, lambda b: text_of(b, "[data-testid=user]") == "anonymous")
    assert "(admin)" in text_of(browser, "#who")
    find(browser, "tr[data-source=demo]")
    wait(browser, lambda b: number(text_of(b, "tr[data-source=demo] [data-testid=rate]")) > 0,
         message="the demo's points/s never went above 0")
    first = number(text_of(browser, "tr[data-source=demo] [data-testid=points]"))
    # Live: the page updates itself (polling), no reload.
    wait(browser, lambda b: number(text_of(b, "tr[data-source=demo] [data-testid=points]")) > first,
         message="the demo's point count did not move")


def test_open_a_table(browser, demo):
    _, base = demo
    browser.get(base + "/#/tables")
    link = find(browser, "tr[data-table='silver.points'] a")
    link.click()
    wait(browser, lambda b: text_of(b, "[data-testid=table-title]") == "silver.points")
    wait(browser, lambda b: "day(ts)" in text_of(b, "[data-testid=facts]"))
    facts = text_of(browser, "[data-testid=facts]")
    assert "Snapshots" in facts and "Data files" in facts, facts
    # One day of demo data: one day(ts) partition (or two around midnight UTC).
    assert fact(browser, "Partitions") in ("1", "2"), facts
    # The scheduler's plan for the table: each job kind with its next run.
    wait(browser, lambda b: "compact" in text_of(b, "[data-testid=scheduled]"))
    scheduled = text_of(browser, "[data-testid=scheduled]")
    assert "expire" in scheduled and "not yet" in scheduled, scheduled


def test_query_shows_a_chart(browser, demo):
    _, base = demo
    browser.get(base + "/#/explore")
    # The picker fills from silver.points and builds "this sensor, last hour".
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "[data-testid=device] option")) > 0)
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "[data-testid=metric] option")) > 0)
    browser.find_element(By.CSS_SELECTOR, "[data-testid=pick]").click()
    chart = find(browser, "svg[data-testid=chart]")
    assert int(chart.get_attribute("data-points")) > 0
    sql = browser.find_element(By.CSS_SELECTOR, "[data-testid=sql]").get_attribute("value")
    assert "INTERVAL '1 hour'" in sql, sql
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=result] tbody tr")


def test_results_are_text_not_markup(browser, demo):
    _, base = demo
    browser.get(base + "/#/explore")
    editor = find(browser, "[data-testid=sql]")
    editor.clear()
    payload = "<img src=x onerror=\"window.__xss=1\">"
    editor.send_keys(f"SELECT '{payload}' AS \"<b>name</b>\"")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=run]").click()
    wait(browser, lambda b: payload in text_of(b, "[data-testid=result] tbody"))
    assert "<b>name</b>" in text_of(browser, "[data-testid=result] thead")
    assert browser.execute_script("return window.__xss") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=result] img")


def test_sql_errors_and_bad_requests_are_4xx(browser, demo):
    _, base = demo
    browser.get(base + "/")
    wait(browser, lambda b: text_of(b, "[data-testid=user]") == "anonymous")
    status, body = api(browser, "POST", "/api/query", {"sql": "SELEC 1"})
    assert status == 400 and "error" in body, body
    status, body = api(browser, "POST", "/api/query", {"nope": 1})
    assert status == 400, body
    status, body = api(browser, "POST", "/api/jobs", {"namespace": "silver", "table": "points", "kind": "explode"})
    assert status == 400, body
    # State-changing calls need the CSRF header, not only the cookie.
    status, body = api(browser, "POST", "/api/query", {"sql": "SELECT 1"}, csrf=False)
    assert status == 403 and "x-weir-csrf" in body["error"], body
    status, body = api(browser, "GET", "/api/table?namespace=silver&table=nope", None)
    assert status == 404, body


def test_login_is_required_and_checked(browser, secured):
    _, base = secured
    browser.delete_all_cookies()
    browser.get(base + "/")
    find(browser, "[data-testid=login-form]")
    status, _ = api(browser, "GET", "/api/tables", None)
    assert status == 401
    browser.find_element(By.CSS_SELECTOR, "[data-testid=login-user]").send_keys("boss")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=login-password]").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=login-submit]").click()
    wait(browser, lambda b: "invalid user name or password" in text_of(b, "[data-testid=login-form]"))


def test_admin_compacts_and_sees_it_finish(browser, secured):
    _, base = secured
    browser.delete_all_cookies()
    login(browser, base, "boss", PASSWORDS["boss"])
    browser.get(base + "/#/tables/public/small_files")
    wait(browser, lambda b: "Datafiles6" in text_of(b, "[data-testid=facts]").replace(" ", ""))
    find(browser, "[data-testid=action-compact]").click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-testid=job][data-kind=compact][data-state=succeeded]"),
         message="the compaction did not finish")
    wait(browser, lambda b: "Datafiles1" in text_of(b, "[data-testid=facts]").replace(" ", ""),
         message="the table still has its small files")
    outcome = text_of(browser, "tr[data-testid=job][data-kind=compact] .outcome")
    assert '"files_in":6' in outcome and '"files_out":1' in outcome, outcome


def test_reader_cannot_compact(browser, secured):
    _, base = secured
    browser.delete_all_cookies()
    login(browser, base, "reader", PASSWORDS["reader"])
    browser.get(base + "/#/tables/public/small_files")
    button = find(browser, "[data-testid=action-compact]")
    assert button.get_attribute("disabled") is not None
    # Not only hidden: the API refuses too, and SQL keeps Flight's roles.
    status, body = api(browser, "POST", "/api/jobs", {"namespace": "public", "table": "small_files", "kind": "compact"})
    assert status == 403 and "role admin is needed" in body["error"], body
    status, body = api(browser, "POST", "/api/query", {"sql": "DROP TABLE small_files"})
    assert status == 403 and "role" in body["error"], body
    status, body = api(browser, "POST", "/api/query", {"sql": "SELECT count(*) AS n FROM small_files"})
    assert status == 200 and body["rows"] == [[6]], body


SLOW_SQL = "SELECT count(*) AS n FROM generate_series(1, 100000000000) AS s(v) WHERE v % 7 = 3"


def test_a_running_query_can_be_cancelled(browser, demo):
    _, base = demo
    browser.get(base + "/#/explore")
    editor = find(browser, "[data-testid=sql]")
    editor.clear()
    editor.send_keys(SLOW_SQL)
    browser.find_element(By.CSS_SELECTOR, "[data-testid=run]").click()
    wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, "[data-testid=cancel]").is_enabled())
    browser.find_element(By.CSS_SELECTOR, "[data-testid=cancel]").click()
    wait(browser, lambda b: "cancelled" in text_of(b, "main .error"), message="no cancel message")
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=run]").is_enabled()


def test_statement_timeout_applies(browser, tmp_path):
    server = WeirServer(tmp_path / "data", ["--http-listen", "127.0.0.1:0", "--query-timeout", "1s"])
    try:
        base = f"http://127.0.0.1:{http_port(server)}"
        browser.get(base + "/")
        wait(browser, lambda b: text_of(b, "[data-testid=user]") == "anonymous")
        status, body = api(browser, "POST", "/api/query", {"sql": SLOW_SQL})
        assert status == 504 and "query timeout" in body["error"], body
    finally:
        server.discard()


def test_dead_letters_click_through_to_their_reasons(browser, tmp_path):
    broker = Mosquitto(tmp_path / "mq")
    server = None
    try:
        server = WeirServer(tmp_path / "data", [
            "--http-listen", "127.0.0.1:0", "--mqtt-broker", broker.url("plant"),
            "--mqtt-subscribe", "plant/+/+", "--mqtt-topic-template", "plant/{device_id}/{metric}",
            "--commit-interval-ms", "300", "--hot-interval-ms", "50", "--maintenance=false"])
        wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
        broker.publish([("plant/pump1/temperature", b"21.5", 1), ("plant/pump1/temperature", b"hot", 1)])
        base = f"http://127.0.0.1:{http_port(server)}"
        browser.get(base + "/")
        link = "tr[data-source=mqtt] a.dead"
        wait(browser, lambda b: text_of(b, link) == "1", message="no dead letter counted")
        find(browser, link).click()

        def shown(b) -> bool:
            # Counted at the hot-tier seal, readable once committed: run
            # the query again (as a user would) until the row is there.
            if "plant/pump1/temperature" in text_of(b, "[data-testid=result] tbody"):
                return True
            if text_of(b, "[data-testid=status]").startswith("0 rows"):
                b.find_element(By.CSS_SELECTOR, "[data-testid=run]").click()
            return False

        wait(browser, shown, message="the dead letter rows did not show")
        rows = text_of(browser, "[data-testid=result] tbody")
        # Stage, reason and the payload (binary, shown as hex: "hot").
        assert "decode" in rows and "error" in rows and "686f74" in rows, rows
        assert "FROM bronze.dead_letters" in browser.find_element(
            By.CSS_SELECTOR, "[data-testid=sql]").get_attribute("value")
    finally:
        if server:
            server.discard()
        broker.stop()


def test_no_open_console_on_a_public_address_without_users(tmp_path):
    """Flight is on loopback (open), the HTTP endpoint is not: the console
    stays off rather than give everyone admin; metrics still serve."""
    server = WeirServer(tmp_path / "data", ["--http-listen", "0.0.0.0:0"])
    try:
        lines = list(server.stdout_tail)
        assert any(line.startswith("weir: console off: ") for line in lines), lines
        assert not any(line.startswith("weir: console at") for line in lines), lines
    finally:
        server.discard()


def test_refresh_a_gold_view_and_see_its_staleness(browser, demo):
    _, base = demo
    browser.get(base + "/#/tables/gold/points_1m")
    wait(browser, lambda b: "Stalenessnever refreshed" in text_of(b, "[data-testid=facts]"))
    find(browser, "[data-testid=action-refresh]").click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-testid=job][data-kind=refresh][data-state=succeeded]"),
         message="the refresh did not finish")
    # The demo keeps writing: the view is up to date or behind silver.points by a little.
    wait(browser, lambda b: "never refreshed" not in text_of(b, "[data-testid=facts]"))
    facts = text_of(browser, "[data-testid=facts]")
    assert "up to date" in facts or "silver.points: behind by" in facts, facts


def test_tables_list_updates_without_reload(browser, demo):
    _, base = demo
    browser.get(base + "/#/tables")
    find(browser, "tr[data-table='silver.points']")
    browser.execute_script("window.__sameDocument = true")
    status, body = api(browser, "POST", "/api/query", {"sql": "CREATE TABLE appears_live (a INT)"})
    assert status == 200, body
    find(browser, "tr[data-table='public.appears_live']")
    assert browser.execute_script("return window.__sameDocument") is True


DEMO_DEVICES = 3


@pytest.fixture(scope="module")
def alerting(tmp_path_factory):
    """Users configured and the demo source running, with a rule that fires
    at once for every demo device (created over Flight SQL by the admin)."""
    users = ";".join(f"{n}:{ROLES[n]}:{hash_password(p)}" for n, p in PASSWORDS.items())
    server = WeirServer(
        tmp_path_factory.mktemp("console-alerts") / "data",
        ["--http-listen", "127.0.0.1:0", "--users", users, "--demo", "--demo-devices", str(DEMO_DEVICES),
         "--demo-interval-ms", "200", "--commit-interval-ms", "300", "--hot-interval-ms", "50",
         "--maintenance=false"],
    )
    conn = flightsql.connect(
        server.uri, db_kwargs={"username": "boss", "password": PASSWORDS["boss"]}, autocommit=True
    )
    execute(conn, "CREATE ALERT warm ON silver.points WHERE metric = 'temperature' "
                  "BY device_id WHEN value > -1000 SEVERITY 'warning' MESSAGE 'warm enough'")
    conn.close()
    yield server, f"http://127.0.0.1:{http_port(server)}"
    server.discard()


def alert_rows(browser, state: str | None = None) -> list:
    """(alert id, state) of each firing alert shown."""
    css = "tr[data-testid=alert][data-rule=warm]" + (f"[data-state={state}]" if state else "")
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((r) => [r.dataset.alertId, r.dataset.state]);",
        css)


def test_alerts_fire_and_an_admin_acknowledges(browser, alerting):
    _, base = alerting
    browser.delete_all_cookies()
    login(browser, base, "boss", PASSWORDS["boss"])
    # The badge counts firing alerts on any page.
    wait(browser, lambda b: text_of(b, "[data-testid=alert-badge]") == str(DEMO_DEVICES),
         message="the navigation's badge did not count the firing alerts")
    find(browser, "#nav a[data-page=alerts]").click()
    wait(browser, lambda b: len(alert_rows(b, "ACTIVE")) == DEMO_DEVICES,
         message="the firing alerts did not show")
    firing = text_of(browser, "[data-testid=firing]")
    assert "device_id=sim-0001" in firing and "warning" in firing and "warm enough" in firing, firing
    assert "WHEN value > -1000" in text_of(browser, "tr[data-testid=rule][data-rule=warm]")
    assert "ACTIVE" in text_of(browser, "[data-testid=transitions]")
    browser.execute_script("window.__sameDocument = true")
    alert_id = alert_rows(browser)[0][0]
    find(browser, f"tr[data-alert-id='{alert_id}'] [data-testid=acknowledge]").click()
    # Live: the row changes state without a reload, with who acknowledged.
    wait(browser, lambda b: b.find_elements(
        By.CSS_SELECTOR, f"tr[data-alert-id='{alert_id}'][data-state=ACKNOWLEDGED]"),
        message="the acknowledged alert did not change state")
    assert "by boss" in text_of(browser, f"tr[data-alert-id='{alert_id}']")
    assert browser.execute_script("return window.__sameDocument") is True
    wait(browser, lambda b: "ACKNOWLEDGED" in text_of(b, "[data-testid=transitions]"))
    assert len(alert_rows(browser, "ACTIVE")) == DEMO_DEVICES - 1
    # Still firing (acknowledged, not resolved): the badge keeps counting it.
    assert text_of(browser, "[data-testid=alert-badge]") == str(DEMO_DEVICES)
    # Only an ACTIVE alert can be acknowledged; the engine says why not.
    status, body = api(browser, "POST", "/api/alerts/acknowledge", {"alert_id": alert_id})
    assert status == 400 and "only an ACTIVE alert" in body["error"], body
    status, body = api(browser, "POST", "/api/alerts/acknowledge", {"alert_id": "no-such-alert"})
    assert status == 404, body


def test_a_reader_sees_alerts_but_cannot_acknowledge(browser, alerting):
    _, base = alerting
    browser.delete_all_cookies()
    login(browser, base, "reader", PASSWORDS["reader"])
    browser.get(base + "/#/alerts")
    wait(browser, lambda b: len(alert_rows(b, "ACTIVE")) >= 1, message="the reader sees no alerts")
    buttons = browser.find_elements(By.CSS_SELECTOR, "tr[data-testid=alert] [data-testid=acknowledge]")
    assert buttons and all(b.get_attribute("disabled") is not None for b in buttons)
    alert_id = alert_rows(browser, "ACTIVE")[0][0]
    # A forged request is refused by the server (the statement's role check),
    # and the alert stays ACTIVE.
    status, body = api(browser, "POST", "/api/alerts/acknowledge", {"alert_id": alert_id})
    assert status == 403 and "role write is needed" in body["error"], body
    status, body = api(browser, "POST", "/api/query", {"sql": f"ACKNOWLEDGE ALERT '{alert_id}'"})
    assert status == 403, body
    status, body = api(browser, "POST", "/api/alerts/acknowledge", {"alert_id": alert_id}, csrf=False)
    assert status == 403 and "x-weir-csrf" in body["error"], body
    status, body = api(browser, "GET", "/api/alerts", None)
    assert status == 200, body
    assert {a["alert_id"]: a["state"] for a in body["firing"]}[alert_id] == "ACTIVE", body
    # The Write role is enough.
    browser.delete_all_cookies()
    login(browser, base, "writer", PASSWORDS["writer"])
    browser.get(base + "/#/alerts")
    find(browser, f"tr[data-alert-id='{alert_id}'] [data-testid=acknowledge]:enabled").click()
    wait(browser, lambda b: b.find_elements(
        By.CSS_SELECTOR, f"tr[data-alert-id='{alert_id}'][data-state=ACKNOWLEDGED]"))
    assert "by writer" in text_of(browser, f"tr[data-alert-id='{alert_id}']")
