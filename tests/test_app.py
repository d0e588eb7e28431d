"""The served page, end to end: the app starts, a gradio_client call reaches the same handler the
page uses, and in a real headless Chromium moving a z slider changes the decoded image.

The browser test needs Debian's chromium and the playwright package (never `playwright install`);
it is skipped where they are missing unless STUDIO_REQUIRE_BROWSER=1 (as in CI), which makes a
missing browser a failure.
"""
import os

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_gradio_client_decodes_like_the_page(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    zeros = [0.0] * 6
    a, _ = client.predict("vae_mnist", 0.0, 0.0, *zeros, api_name="/vae_decode")
    b, map_b = client.predict(checkpoint="vae_mnist", z1=1.5, z2=-2.0, api_name="/vae_decode")
    img_a, img_b = (np.asarray(Image.open(p).convert("L"), float) for p in (a, b))
    assert img_a.shape == img_b.shape and img_a.shape[0] >= 28
    assert np.abs(img_a - img_b).mean() > 5
    assert Image.open(map_b).size[0] > 300
    with pytest.raises(Exception, match="grid size|less than minimum"):
        client.predict("vae_mnist", 0, 1.0, api_name="/vae_decode_grid")  # gradio or the handler refuses it


def _browser_available() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return os.path.exists(CHROMIUM)


@pytest.mark.skipif(not _browser_available() and os.environ.get("STUDIO_REQUIRE_BROWSER") != "1",
                    reason="Debian chromium and playwright are not installed")
def test_moving_a_z_slider_changes_the_decoded_image(app_url):
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="VAE").click()
        decoded = page.locator("#vae-decoded img")
        decoded.wait_for(timeout=60_000)
        before = decoded.get_attribute("src")
        box = page.locator("#vae-z1 input[type=number]")
        box.fill("2.5")
        box.press("Enter")
        page.wait_for_function(
            "before => { const i = document.querySelector('#vae-decoded img'); return i && i.src !== before; }",
            arg=before, timeout=30_000)
        assert decoded.get_attribute("src") != before
        assert "Test set" in page.locator("#vae-card").inner_text()
        browser.close()
    assert not errors, errors


@pytest.mark.skipif(not _browser_available() and os.environ.get("STUDIO_REQUIRE_BROWSER") != "1",
                    reason="Debian chromium and playwright are not installed")
def test_the_main_button_of_every_tab_works_in_the_page(app_url):
    """Visit every tab and press its first primary button (training excepted), as a new user would:
    no output may end in Gradio's Error badge, and the browser logs no errors."""
    import re
    import time

    from playwright.sync_api import sync_playwright

    errors, pressed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(app_url, wait_until="domcontentloaded")
        page.wait_for_selector("[role=tab]", timeout=60_000)
        tabs = page.locator("[role=tab]")
        labels = [tabs.nth(i).inner_text().strip() for i in range(tabs.count())]

        def settle(limit=120):
            time.sleep(0.7)
            end = time.time() + limit
            while time.time() < end and page.locator(".generating, .pending").count():
                time.sleep(0.3)

        for i, label in enumerate(labels):
            tabs.nth(i).click()
            settle()  # what the tab runs on load
            buttons = page.locator("button.primary:visible")
            names = [buttons.nth(k).inner_text().strip() for k in range(buttons.count())]
            main = next((k for k, n in enumerate(names) if not re.match(r"(start|train|resume|import)", n, re.I)), None)
            assert main is not None, f"{label}: no main button"
            before = page.locator("span.error").count()
            buttons.nth(main).click()
            settle()
            assert page.locator("span.error").count() == before, f"{label} / {names[main]} ended in an error"
            pressed.append(f"{label}/{names[main]}")
        browser.close()
    assert len(pressed) == len(labels) >= 8, pressed
    assert not errors, errors
