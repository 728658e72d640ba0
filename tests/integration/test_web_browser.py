"""The web page in a real browser: Debian's Chromium (Selenium, the system chromedriver), a
real `triage web` process, real Redis, Celery workers and databases, a DICOM study enqueued
through the CLI and decided urgent by a worker.

Saves the screenshots README shows (docs/web-*.png).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import REQUIRE_SERVICES
from tests.gateway.intake.test_receiver import ct_instance
from tests.integration.conftest import REPO_ROOT, Pipeline, web_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PASSWORD = "a browser test password"
HOSTILE_NAME = "<script>window.pwned=1</script>^X"
STUDY_UID = "1.2.826.0.1.3680043.10.999.7001"
DOCS = REPO_ROOT / "docs"


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"the browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)


def cli(pipeline: Pipeline, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "triage", *args], env=pipeline.env, cwd=REPO_ROOT,
        input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def web(pipeline_factory, database_url: str, tmp_path: Path) -> Iterator[tuple[Pipeline, str]]:
    """Workers and `triage web` on one test ledger; yields the pipeline and the page's URL."""
    _browser_or_skip()
    pipeline = pipeline_factory(database_url, batch_size=8)
    pipeline.env["TRIAGE_WEB_SECRET_KEY"] = "browser-test-" + "s" * 32
    pipeline.start_worker("urgent", "urgent")
    pipeline.start_worker("stat,scans", "routine")
    cli(
        pipeline, "users", "add", "alice", "--role", "clinician", "--password-stdin", stdin=PASSWORD
    )
    with web_process(pipeline, tmp_path / "web.log") as url:
        yield pipeline, url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,900",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def enqueue_hostile_urgent_study(pipeline: Pipeline, folder: Path) -> None:
    """Three bright (urgent) CT slices whose PatientName holds a script tag, via the CLI."""
    folder.mkdir()
    for number in range(3):
        dataset = ct_instance(STUDY_UID, number + 1, mean=225, size=128)
        dataset.PatientName = HOSTILE_NAME
        dataset.save_as(folder / f"slice{number}.dcm", enforce_file_format=True)
    cli(pipeline, "enqueue", str(folder))


def log_in(driver, url: str, password: str = PASSWORD) -> None:  # noqa: ANN001
    driver.get(f"{url}/login")
    waiting(driver).until(lambda d: d.find_element(By.NAME, "username")).send_keys("alice")
    driver.find_element(By.NAME, "password").send_keys(password)
    click(driver, By.ID, "login")


def waiting(driver):  # noqa: ANN001, ANN201
    """A wait that re-finds: the live worklist re-renders (SSE) and a click loads a new page,
    so an element found a moment ago may be gone or stale."""
    return WebDriverWait(
        driver, 90, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    )


def click(driver, by: str, value: str) -> None:  # noqa: ANN001
    """Click the element once it is there, found afresh if an update replaced it."""

    def clicked(d) -> bool:  # noqa: ANN001
        d.find_element(by, value).click()
        return True

    waiting(driver).until(clicked)


def shows(driver, by: str, value: str, expected: str, exact: bool = False) -> None:  # noqa: ANN001
    """Wait until the element's text holds (or, `exact`, is) `expected`; fail naming both."""
    seen: list[str] = [""]

    def holds(d) -> bool:  # noqa: ANN001
        seen[0] = d.find_element(by, value).text
        return seen[0] == expected if exact else expected in seen[0]

    try:
        waiting(driver).until(holds)
    except TimeoutException:
        pytest.fail(f"{value} never showed {expected!r}; it shows {seen[0]!r}")


def post_without_csrf(driver, path: str) -> int:  # noqa: ANN001
    """The status a same-origin form post without the CSRF token gets (the session cookie goes)."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', body: new URLSearchParams({urgent: 'no', finding_class: '0'})})"
        ".then(r => done(r.status));"
    )
    return driver.execute_async_script(script, path)


def test_a_clinician_works_the_live_worklist_in_chromium(web, browser, tmp_path: Path) -> None:  # noqa: ANN001
    pipeline, url = web
    log_in(browser, url, password="not the password")
    shows(browser, By.ID, "login-error", "wrong user name or password")
    log_in(browser, url)
    waiting(browser).until(lambda d: d.find_elements(By.ID, "whoami"))
    shows(browser, By.ID, "worklist", "No open urgent studies")
    shows(browser, By.ID, "live-state", "live", exact=True)
    browser.execute_script("window.notReloaded = true;")

    enqueue_hostile_urgent_study(pipeline, tmp_path / "incoming")
    row = f'tr.case[data-study="{STUDY_UID}"]'
    waiting(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    assert browser.execute_script("return window.notReloaded === true;")  # live, no reload
    DOCS.mkdir(exist_ok=True)
    browser.save_screenshot(str(DOCS / "web-worklist.png"))

    click(browser, By.CSS_SELECTOR, f"{row} a")
    shows(browser, By.ID, "patient-name", HOSTILE_NAME, exact=True)  # text, not markup
    assert browser.execute_script("return window.pwned === undefined;")
    shows(browser, By.ID, "statement", "not a diagnosis")
    click(browser, By.ID, "ack")
    shows(browser, By.ID, "acknowledged", "alice")
    click(browser, By.ID, "urgent-yes")
    click(browser, By.CSS_SELECTOR, "#finding-class option[value='2']")
    waiting(browser).until(lambda d: d.find_element(By.ID, "comment")).send_keys(
        "confirmed <b>PE</b>"
    )
    click(browser, By.ID, "save-finding")
    shows(browser, By.ID, "findings", "confirmed <b>PE</b>")
    shows(browser, By.ID, "findings", "alice")
    browser.set_window_size(1280, 1500)  # the whole study page
    browser.save_screenshot(str(DOCS / "web-study.png"))
    browser.set_window_size(1280, 900)

    assert post_without_csrf(browser, f"/studies/{STUDY_UID}/findings") == 403
    browser.get(f"{url}/?tab=acknowledged")
    shows(browser, By.ID, "worklist", STUDY_UID)
    browser.get(f"{url}/performance")
    shows(browser, By.CSS_SELECTOR, "#agreement td.ppv", "1.00", exact=True)
    browser.save_screenshot(str(DOCS / "web-performance.png"))
    browser.get(f"{url}/operations")
    shows(browser, By.TAG_NAME, "h1", "403")
    assert post_without_csrf(browser, "/operations/deliveries/any/retry") == 403

    cli(pipeline, "users", "disable", "alice")
    browser.get(f"{url}/")
    waiting(browser).until(lambda d: d.current_url.endswith("/login"))

    trail = json.loads(cli(pipeline, "audit", "--json").stdout)
    actions = [(row["who"], row["action"]) for row in trail]
    assert actions[:2] == [("alice", "login_failed"), ("alice", "login")]
    assert {("alice", "view_study"), ("alice", "acknowledge"), ("alice", "finding")} <= set(actions)
    assert all(
        row["study_uid"] == STUDY_UID
        for row in trail
        if row["action"] != "login" and row["action"] != "login_failed"
    )
