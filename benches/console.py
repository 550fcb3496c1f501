"""The web console (issue 23): page-load time against a lakehouse with 1,000
tables, and screenshots of each page for the README.

    benches/console.py load [--tables 1000] [--reps 10]
    benches/console.py screenshots [--out docs/console]

`load` creates the tables over Flight SQL (10 namespaces), then opens the
console in headless Chromium `--reps` times (fresh page load each) and reads
`performance` marks the pages set once drawn: Tables (every table listed)
and Pipeline, in ms from navigation start (HTML, modules, API call,
rendering). `screenshots` runs `weir serve --demo`, compacts a table, runs
a query and creates an alert rule (one alert acknowledged), then saves
Pipeline, Tables, a table, Explore and Alerts as PNG.

Needs the test venv (selenium, ADBC) and tests/scripts/chromium.sh install;
WEIR_BIN picks the binary (default target/debug/weir).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))
from console_browser import chrome, find, http_port, text_of, wait  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from weir_harness import WeirServer, execute  # noqa: E402


def mark(browser, name: str):
    return browser.execute_script(
        "const m = performance.getEntriesByName(arguments[0]); return m.length ? m[0].startTime : null;",
        name,
    )


def load(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = WeirServer(Path(tmp) / "data", ["--http-listen", "127.0.0.1:0"])
        try:
            base = f"http://127.0.0.1:{http_port(server)}"
            conn = flightsql.connect(server.uri, autocommit=True)
            started = time.monotonic()
            namespaces = 10
            for n in range(namespaces):
                execute(conn, f"CREATE SCHEMA IF NOT EXISTS ns{n:02}")
            for i in range(args.tables):
                execute(conn, f"CREATE TABLE ns{i % namespaces:02}.t{i:04} (ts TIMESTAMP, device_id VARCHAR, value DOUBLE)")
            conn.close()
            print(f"created {args.tables} tables in {time.monotonic() - started:.1f} s")
            api = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                with urllib.request.urlopen(base + "/api/tables", timeout=30) as r:
                    r.read()
                api.append((time.perf_counter() - t0) * 1000)
            browser = chrome()
            try:
                tables, pipeline, counts = [], [], set()
                for _ in range(args.reps):
                    browser.get("about:blank")
                    browser.get(base + "/#/tables")
                    wait(browser, lambda b: mark(b, "weir:tables-rendered") is not None, 60)
                    tables.append(mark(browser, "weir:tables-rendered"))
                    counts.add(text_of(browser, "[data-testid=table-count]").split(" ")[0])
                    browser.get("about:blank")
                    browser.get(base + "/#/pipeline")
                    wait(browser, lambda b: mark(b, "weir:pipeline-rendered") is not None, 60)
                    pipeline.append(mark(browser, "weir:pipeline-rendered"))
            finally:
                browser.quit()
            print(f"tables listed on the page: {sorted(counts)}")
            for name, xs in (("GET /api/tables (server + HTTP)", api),
                             ("Tables page, navigation start -> every table drawn", tables),
                             ("Pipeline page, navigation start -> drawn", pipeline)):
                print(f"{name}: median {statistics.median(xs):.0f} ms, max {max(xs):.0f} ms over {len(xs)} loads")
        finally:
            server.discard()


def screenshots(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = WeirServer(Path(tmp) / "data", ["--http-listen", "127.0.0.1:0", "--demo",
                                                 "--demo-devices", "4", "--demo-interval-ms", "250"])
        browser = chrome(1280, 900)
        try:
            base = f"http://127.0.0.1:{http_port(server)}"
            browser.get(base + "/")
            wait(browser, lambda b: text_of(b, "tr[data-source=demo] [data-testid=rate]") not in ("", "–"))
            time.sleep(2)  # a few more commits, so the pictures have something to show
            browser.save_screenshot(str(out / "pipeline.png"))
            browser.get(base + "/#/tables")
            find(browser, "tr[data-table='silver.points']")
            browser.save_screenshot(str(out / "tables.png"))
            browser.get(base + "/#/tables/silver/points")
            find(browser, "[data-testid=action-compact]").click()
            wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-testid=job][data-state=succeeded]"))
            browser.save_screenshot(str(out / "table.png"))
            browser.get(base + "/#/explore")
            wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "[data-testid=device] option")) > 0)
            wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "[data-testid=metric] option")) > 0)
            browser.find_element(By.CSS_SELECTOR, "[data-testid=pick]").click()
            find(browser, "svg[data-testid=chart]")
            browser.save_screenshot(str(out / "explore.png"))
            conn = flightsql.connect(server.uri, autocommit=True)
            execute(conn, "CREATE ALERT warm ON silver.points WHERE metric = 'temperature' BY device_id "
                          "WHEN value > 20 SEVERITY 'warning' MESSAGE 'warmer than 20'")
            execute(conn, "CREATE ALERT pressure_high ON silver.points WHERE metric = 'pressure' BY device_id "
                          "WHEN value > 100 CLEAR WHEN value < 90 SEVERITY 'critical'")
            conn.close()
            browser.get(base + "/#/alerts")
            find(browser, "tr[data-testid=alert] [data-testid=acknowledge]").click()
            wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-testid=alert][data-state=ACKNOWLEDGED]"))
            time.sleep(1)
            browser.save_screenshot(str(out / "alerts.png"))
            print(f"screenshots in {out}: pipeline.png tables.png table.png explore.png alerts.png")
        finally:
            browser.quit()
            server.discard()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("load")
    p.add_argument("--tables", type=int, default=1000)
    p.add_argument("--reps", type=int, default=10)
    p = sub.add_parser("screenshots")
    p.add_argument("--out", default=str(HERE.parent / "docs" / "console"))
    args = parser.parse_args()
    {"load": load, "screenshots": screenshots}[args.command](args)


if __name__ == "__main__":
    main()
