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
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.services import free_port, wait_until
from tests.conftest import REQUIRE_SERVICES
from tests.gateway.intake.test_receiver import ct_instance
from tests.integration.conftest import REPO_ROOT, Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PASSWORD = "a browser test password"
HOSTILE_NAME = "<script>window.pwned=1</script>^X"
STUDY_UID = "1.2.826.0.1.3680043.10.999.7001"
DOCS = REPO_ROOT / "docs"


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
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
    port = free_port()
    log = (tmp_path / "web.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "triage", "web", "--port", str(port)],
        env=pipeline.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200,
            "triage web",
            timeout=60,
        )
        yield pipeline, url
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


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
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/login")
    driver.find_element(By.NAME, "username").send_keys("alice")
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


def post_without_csrf(driver, path: str) -> int:  # noqa: ANN001
    """The status a same-origin form post without the CSRF token gets (the session cookie goes)."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', body: new URLSearchParams({urgent: 'no', finding_class: '0'})})"
        ".then(r => done(r.status));"
    )
    return driver.execute_async_script(script, path)


def test_a_clinician_works_the_live_worklist_in_chromium(web, browser, tmp_path: Path) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pipeline, url = web
    wait = WebDriverWait(browser, 90)
    log_in(browser, url, password="not the password")
    assert "wrong user name or password" in browser.find_element(By.ID, "login-error").text
    log_in(browser, url)
    wait.until(lambda d: d.find_elements(By.ID, "whoami"))
    assert "No open urgent studies" in browser.find_element(By.ID, "worklist").text
    wait.until(lambda d: d.find_element(By.ID, "live-state").text == "live")
    browser.execute_script("window.notReloaded = true;")

    enqueue_hostile_urgent_study(pipeline, tmp_path / "incoming")
    row = f'tr.case[data-study="{STUDY_UID}"]'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    assert browser.execute_script("return window.notReloaded === true;")  # live, no reload
    DOCS.mkdir(exist_ok=True)
    browser.save_screenshot(str(DOCS / "web-worklist.png"))

    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    wait.until(lambda d: d.find_elements(By.ID, "patient-name"))
    assert browser.find_element(By.ID, "patient-name").text == HOSTILE_NAME  # text, not markup
    assert browser.execute_script("return window.pwned === undefined;")
    assert "not a diagnosis" in browser.find_element(By.ID, "statement").text
    browser.find_element(By.ID, "ack").click()
    wait.until(lambda d: d.find_elements(By.ID, "acknowledged"))
    assert "alice" in browser.find_element(By.ID, "acknowledged").text
    browser.find_element(By.ID, "urgent-yes").click()
    browser.find_element(By.CSS_SELECTOR, "#finding-class option[value='2']").click()
    browser.find_element(By.ID, "comment").send_keys("confirmed <b>PE</b>")
    browser.find_element(By.ID, "save-finding").click()
    wait.until(lambda d: "confirmed <b>PE</b>" in d.find_element(By.ID, "findings").text)
    assert "alice" in browser.find_element(By.ID, "findings").text
    browser.set_window_size(1280, 1500)  # the whole study page
    browser.save_screenshot(str(DOCS / "web-study.png"))
    browser.set_window_size(1280, 900)

    assert post_without_csrf(browser, f"/studies/{STUDY_UID}/findings") == 403
    browser.get(f"{url}/?tab=acknowledged")
    assert STUDY_UID in browser.find_element(By.ID, "worklist").text
    browser.get(f"{url}/performance")
    assert browser.find_element(By.CSS_SELECTOR, "#agreement td.ppv").text == "1.00"
    browser.save_screenshot(str(DOCS / "web-performance.png"))
    browser.get(f"{url}/operations")
    assert "403" in browser.find_element(By.TAG_NAME, "h1").text
    assert post_without_csrf(browser, "/operations/deliveries/any/retry") == 403

    cli(pipeline, "users", "disable", "alice")
    browser.get(f"{url}/")
    assert browser.current_url.endswith("/login")

    trail = json.loads(cli(pipeline, "audit", "--json").stdout)
    actions = [(row["who"], row["action"]) for row in trail]
    assert actions[:2] == [("alice", "login_failed"), ("alice", "login")]
    assert {("alice", "view_study"), ("alice", "acknowledge"), ("alice", "finding")} <= set(actions)
    assert all(
        row["study_uid"] == STUDY_UID
        for row in trail
        if row["action"] != "login" and row["action"] != "login_failed"
    )
