"""End to end: ``prodcat serve`` and ``prodcat ui`` as real processes on loopback, and a real
headless Chromium (Debian's, installed by ``scripts/install-browser.sh``) driven by Selenium to
fill the seller form, upload a photo and see the top-3 appear, then decide a correction the API
queued on the Review page (both servers share one SQLite review store).

Screenshots are kept as test artefacts in ``$PRODCAT_TEST_ARTIFACTS`` (default
``/tmp/prodcat-test-artifacts``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="/usr/bin/chromium is absent: run `bash scripts/install-browser.sh` "
                              "(Debian's chromium and chromium-driver) to run the browser test"),
    pytest.mark.skipif(not CHROMEDRIVER.exists(),
                       reason="/usr/bin/chromedriver is absent: run `bash scripts/install-browser.sh`"),
]

selenium = pytest.importorskip("selenium", reason="selenium is not installed (extra 'ui')")
pytest.importorskip("streamlit")
pytest.importorskip("fastapi")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

LOOPBACK = "127.0.0.1"


def artifacts_dir() -> Path:
    path = Path(os.environ.get("PRODCAT_TEST_ARTIFACTS") or "/tmp/prodcat-test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_failure(browser, tmp_path: Path, name: str, shots: list[Path]) -> None:
    """Add what the browser showed when a test failed (screenshot, page source) to ``shots``:
    the first thing to look at."""
    shot = tmp_path / f"{name}.png"
    if browser.save_screenshot(str(shot)):
        shots.append(shot)
    (tmp_path / f"{name}.html").write_text(browser.page_source, encoding="utf-8")
    shots.append(tmp_path / f"{name}.html")


def keep_artifacts(shots: list[Path]) -> None:
    """Copy the screenshots (and failure pages) to the artefacts folder."""
    for s in shots:
        shutil.copy2(s, artifacts_dir() / s.name)


@contextlib.contextmanager
def shots_kept(browser, tmp_path: Path, failure: str) -> Iterator[list[Path]]:
    """The list a test adds its screenshots to; they go to the artefacts folder however the
    test ends, and with what the browser showed (``failure``.png/.html) when it fails."""
    shots: list[Path] = []
    try:
        yield shots
    except Exception:
        keep_failure(browser, tmp_path, failure, shots)
        raise
    finally:
        keep_artifacts(shots)


def save_shot(browser, path: Path, shots: list[Path]) -> None:
    """A screenshot of the page as it is now, at ``path``, added to ``shots``."""
    assert browser.save_screenshot(str(path))
    shots.append(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[:2]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return resp.read()
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start(args: list[str], log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("prodcat")
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "prodcat.cli", *args]
    env = {**os.environ, "PRODCAT_API_KEYS": "", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode())
    out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{filename}\"\r\n"
              f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def e2e_model(tmp_path_factory):
    """``(bundle, catalog, fused)``: a text+image model of a small demo catalogue when the image
    encoder can run here (the image side then shows in the page), else a text-only one; with an
    evaluation report in ``MODEL_DIR/report`` for the model page."""
    import warnings

    from prodcat.data import read_catalog
    from prodcat.demo import write_demo_catalog
    from prodcat.evaluation import compute_metrics, write_report
    from prodcat.model import Classifier

    root = tmp_path_factory.mktemp("e2e")
    catalog = read_catalog(write_demo_catalog(root / "catalog", n_listings=150, seed=5)).labelled()
    model = None
    try:
        import onnxruntime  # noqa: F401

        from prodcat.image import ImageClassifier, create_encoder

        create_encoder("efficientnet-lite0").ensure_export()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Classifier(image=ImageClassifier(), fusion="late").fit(catalog.X, catalog.y,
                                                                           taxonomy=catalog.taxonomy)
    except Exception as exc:  # no onnxruntime, no encoder export, too few photos: text only
        print(f"e2e: text-only model ({type(exc).__name__}: {exc})")
    fused = model is not None and getattr(model, "image_", None) is not None
    if not fused:
        model = Classifier().fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
    bundle = model.save(root / "model", training={"source": catalog.source, "format": catalog.format,
                                                  "n_listings": len(catalog)})
    metrics = compute_metrics(catalog.y.to_numpy(), model.predict_proba(catalog.X),
                              [str(c) for c in model.classes_], catalog.taxonomy)
    write_report(metrics, bundle / "report", title="e2e report")
    return bundle, catalog, fused


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1700",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    # An explicit driver path: Selenium Manager (which would download drivers) is not used.
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def sidebar_page(browser, name: str) -> None:
    next(e for e in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebar'] label")
         if e.text.strip() == name).click()


def metric_value(browser, label: str) -> str | None:
    for metric in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stMetric']"):
        if label in metric.text:
            return metric.find_element(By.CSS_SELECTOR, "[data-testid='stMetricValue']").text.strip()
    return None


def settled(browser) -> bool:
    """The script run has finished painting: no spinner, no element left over from the last run."""
    return not browser.find_elements(By.CSS_SELECTOR, "[data-stale='true'], [data-testid='stSpinner']")


def submit_until(browser, label: str, text: str, timeout: float = 120.0, lost_after: float = 20.0) -> None:
    """Click the button ``label`` until ``text`` shows on the page.

    On a machine whose cores are busy, a click that lands while the app is still taking in the
    upload can be lost (the page then sits idle, no run started: seen once in CI-like runs). The
    button is clicked again only then — the page settled and ``text`` still absent after
    ``lost_after`` seconds — never while a run is under way, so a listing is sent once per run."""
    deadline = time.monotonic() + timeout
    present = EC.text_to_be_present_in_element((By.TAG_NAME, "body"), text)
    while True:
        next(b for b in browser.find_elements(By.TAG_NAME, "button") if label in b.text).click()
        clicked = time.monotonic()
        while not present(browser):
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{text!r} did not appear within {timeout:.0f} s of clicking {label!r}")
            running = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
            if now - clicked > lost_after and settled(browser) and not running:
                break  # the click was lost: click again
            time.sleep(0.5)
        else:
            return


def decide_in_browser(browser, shots: list[Path], tmp_path: Path, review_db: str) -> None:
    """Open the Review page, sign in as a reviewer, confirm the first item with the keyboard
    shortcut, and check the decision is in the store."""
    from prodcat.review import open_store

    wait = WebDriverWait(browser, 120, poll_frequency=0.5)  # the explanation runs on busy cores
    sidebar_page(browser, "Review")
    name = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR,
                                                  "input[aria-label='Reviewer (your name)']")))
    name.send_keys("e2e-reviewer\n")
    wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Why this category"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid='stProgress']")) >= 3)
    wait.until(lambda d: any("Confirm:" in b.text for b in d.find_elements(By.TAG_NAME, "button")))
    wait.until(settled)
    page = browser.find_element(By.TAG_NAME, "body").text
    item_id = int(re.search(r"#(\d+): ", page).group(1))
    assert "Queue" in page and "Reviewed today" in page and "Model precision" in page
    assert browser.find_elements(By.CSS_SELECTOR, "mark")
    top1 = re.search(r"1\. (.+) \((\w+)\) — ", page)
    time.sleep(0.5)
    save_shot(browser, tmp_path / "e2e-review-page.png", shots)
    # The keyboard shortcut (Y: confirm the top-1), typed outside any field.
    browser.execute_script("document.activeElement && document.activeElement.blur()")
    ActionChains(browser).send_keys("y").perform()
    wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), f"#{item_id} filed under"))
    # The next item is claimed at once; the decided one is never offered again.
    def next_item(d):
        shown = re.search(r"#(\d+): ", d.find_element(By.TAG_NAME, "body").text)
        return shown is not None and int(shown.group(1)) != item_id

    wait.until(next_item)
    store = open_store(review_db)
    try:
        decision = store.get(item_id)["decision"]
        assert decision["reviewer"] == "e2e-reviewer" and decision["label"] == top1.group(2)
        assert store.stats()["decided_today"] == 1
    finally:
        store.close()
    wait.until(lambda d: metric_value(d, "Reviewed today") == "1")
    wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Why this category"))
    wait.until(settled)
    time.sleep(0.5)
    save_shot(browser, tmp_path / "e2e-review-decided.png", shots)


def test_serve_and_ui_in_a_real_browser(e2e_model, browser, tmp_path):
    from prodcat.model import load_bundle

    model_dir, catalog, fused = e2e_model
    model, _ = load_bundle(model_dir)
    # A listing of the pool category with its own drawn photo, and what the model says of it.
    row = catalog.frame[(catalog.frame["label"] == "50") & catalog.frame["image"].notna()].iloc[0]
    pic = tmp_path / "pool.jpg"
    shutil.copyfile(row["image"], pic)
    title = str(row["title"])
    expected = model.predict_top_k({"title": title, "description": "", "image": str(pic)}, 3)[0][0]
    api_port, ui_port = free_port(), free_port()
    api_log, ui_log = tmp_path / "serve.log", tmp_path / "ui.log"
    review_db = f"sqlite:///{tmp_path / 'reviews.db'}"
    api = start(["serve", "--model", str(model_dir), "--host", LOOPBACK, "--port", str(api_port),
                 "--review-db", review_db], api_log)
    ui = start(["ui", "--model", str(model_dir), "--host", LOOPBACK, "--port", str(ui_port),
                "--review-db", review_db, "--review-order", "oldest"], ui_log)
    try:
        with shots_kept(browser, tmp_path, "e2e-failure") as shots:
            # -- the API process answers a real multipart upload ------------------------------------
            wait_http(f"http://{LOOPBACK}:{api_port}/readyz", api, api_log)
            body, ctype = multipart({"title": title}, "image", "pool.jpg", pic.read_bytes())
            req = urllib.request.Request(f"http://{LOOPBACK}:{api_port}/v1/predict", data=body,
                                         headers={"Content-Type": ctype}, method="POST")
            with urllib.request.urlopen(req, timeout=30) as resp:
                answer = json.loads(resp.read())
            assert answer["top_k"][0]["code"] == expected["code"] and len(answer["top_k"]) == 3
            assert answer["top_k"][0]["probability"] == pytest.approx(expected["probability"], abs=1e-6)
            assert set(answer["modalities"]) == ({"text", "image"} if fused else {"text"})
            if fused:
                assert answer["modalities"]["image"] is not None

            # -- the web app in Chromium ------------------------------------------------------------
            assert wait_http(f"http://{LOOPBACK}:{ui_port}/_stcore/health", ui, ui_log) == b"ok"
            wait = WebDriverWait(browser, 60)
            browser.get(f"http://{LOOPBACK}:{ui_port}/")
            field = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "input[aria-label='Title (required)']")))
            field.send_keys(title)
            browser.find_element(By.CSS_SELECTOR, "textarea[aria-label='Description']").send_keys(
                "Très bon état, livraison rapide")
            browser.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(str(pic))
            wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid='stFileUploader']"),
                                                        "pool.jpg"))
            submit_until(browser, "Find categories", "Top 3 categories")
            bars = 9 if fused else 6  # top 3, then the text's (and the photo's) own top 3
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid='stProgress']")) >= bars)
            time.sleep(0.5)  # let the last elements paint before the screenshot
            page = browser.find_element(By.TAG_NAME, "body").text
            assert f"1. {expected['name']} ({expected['code']})" in page
            assert ("reads text only" in page) != fused
            assert "Needs review" in page or "can be filed automatically" in page
            assert "What each part said" in page
            # The explanation under the answer: the seller's own words highlighted, the heat map.
            wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Why this category"))
            assert browser.find_elements(By.CSS_SELECTOR, "mark")
            if fused:
                wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Photo regions behind"))
            save_shot(browser, tmp_path / "e2e-seller-page.png", shots)

            # -- the review page: a correction posted to the API, decided in the browser ------------
            for n, text in enumerate((title, "Lot de 3 articles neufs")):
                req = urllib.request.Request(
                    f"http://{LOOPBACK}:{api_port}/v1/feedback", method="POST",
                    data=json.dumps({"id": f"e2e-{n}", "title": text, "description": "Très bon état",
                                     "label": expected["code"]}).encode(),
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    assert resp.status == 201
            decide_in_browser(browser, shots, tmp_path, review_db)

            # -- the model page shows the evaluation report -----------------------------------------
            sidebar_page(browser, "Model")
            wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Per-class F1"))
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")) >= 3)
            assert "Weighted F1" in browser.find_element(By.TAG_NAME, "body").text
            browser.set_window_size(1280, 4000)  # the whole page in one screenshot
            time.sleep(1.0)
            save_shot(browser, tmp_path / "e2e-model-page.png", shots)
    finally:
        api_rc, ui_rc = stop(api), stop(ui)
    # Clean shutdown on SIGTERM: both stop by themselves (uvicorn re-raises the signal once it
    # has finished, hence -15), the API after unloading the model.
    api_text = api_log.read_text()
    assert api_rc in (0, -15), api_text[-2000:]
    assert ui_rc in (0, -15), ui_log.read_text()[-2000:]
    assert "Application shutdown complete" in api_text and "unloaded" in api_text
    assert "Traceback" not in api_text and "Traceback" not in ui_log.read_text()
