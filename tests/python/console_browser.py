"""Headless Chromium (Debian ``chromium`` + ``chromium-driver``, installed by
``tests/scripts/chromium.sh install``) driven through Selenium, for the web
console tests and the screenshot/load scripts.  A missing browser is an
error, never a skip."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from weir_harness import WeirServer, http_port  # noqa: F401 (http_port re-exported for test_console)

WAIT_S = 30


def chrome(width: int = 1400, height: int = 1000) -> webdriver.Chrome:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    if not browser or not driver:
        raise RuntimeError(
            f"Chromium not found (browser={browser}, driver={driver}): "
            "run tests/scripts/chromium.sh install"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def wait(browser, condition, timeout: float = WAIT_S, message: str = ""):
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition, message)


def find(browser, css: str):
    return wait(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, css)
        if b.find_elements(By.CSS_SELECTOR, css)
        else False,
        message=f"no element {css}",
    )


def text_of(browser, css: str) -> str:
    """The text of the first element matching ``css`` (or '' when none);
    pages re-render while polling, so never keep elements around."""
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", css
    )


def login(browser, base: str, user: str, password: str) -> None:
    browser.get(base + "/")
    find(browser, "[data-testid=login-form]")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=login-user]").send_keys(user)
    browser.find_element(By.CSS_SELECTOR, "[data-testid=login-password]").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "[data-testid=login-submit]").click()
    wait(browser, lambda b: text_of(b, "[data-testid=user]") == user, message=f"not logged in as {user}")


def api(browser, method: str, path: str, body=None, csrf: bool = True) -> tuple:
    """Calls the API from the page (its cookie): (status, json)."""
    return tuple(
        browser.execute_async_script(
            """
            const [method, path, body, csrf, done] = arguments;
            (async () => {
              const me = await (await fetch('/api/me')).json();
              const headers = {'content-type': 'application/json'};
              if (csrf) headers['x-weir-csrf'] = me.csrf;
              const r = await fetch(path, {method, headers,
                body: body === null ? undefined : JSON.stringify(body)});
              done([r.status, await r.json()]);
            })().catch((e) => done([0, String(e)]));
            """,
            method,
            path,
            body,
            csrf,
        )
    )
