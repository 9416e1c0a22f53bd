"""The chat page at / in headless Chromium (Debian's chromium and chromium-driver, driven by selenium):
a message typed and sent streams the model's reply into the page, with tokens/s shown."""
from __future__ import annotations

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pipeinfer.server import ServerOptions, create_app
from server_helpers import running_server


def _driver() -> webdriver.Chrome:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:  # CI installs both (.ci/install-chromium); a clear failure otherwise
        pytest.fail("the page test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--window-size=1000,800"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


@pytest.mark.slow
def test_page_streams_a_reply(pipe, tmp_path):
    pipe.reset()
    messages = [{"role": "user", "content": "Say something"}]
    want = pipe.create_chat_completion(messages, max_tokens=24, temperature=0)["choices"][0]["message"]["content"]
    app = create_app(pipe, ServerOptions(model_id="tiny-model"))
    with running_server(app) as url:
        browser = _driver()
        try:
            browser.get(url + "/")
            wait = WebDriverWait(browser, 60)
            wait.until(lambda b: b.find_element(By.ID, "model").text == "tiny-model")
            browser.find_element(By.ID, "max-tokens").clear()
            browser.find_element(By.ID, "max-tokens").send_keys("24")
            browser.find_element(By.ID, "temperature").clear()
            browser.find_element(By.ID, "temperature").send_keys("0")
            browser.find_element(By.ID, "input").send_keys("Say something")
            browser.find_element(By.ID, "send").click()
            # the reply is done when the send button is enabled again and the stats show the final timings
            wait.until(lambda b: "tokens/s" in b.find_element(By.ID, "stats").text
                       and b.find_element(By.ID, "send").is_enabled()
                       and b.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
            reply = browser.execute_script("return document.querySelector('.msg.assistant').textContent")
            stats = browser.find_element(By.ID, "stats").text
            browser.save_screenshot(str(tmp_path / "page.png"))  # kept in pytest's tmp dir for a look
        finally:
            browser.quit()
    assert reply == want and reply
    assert "tokens/s" in stats and "acceptance" in stats
