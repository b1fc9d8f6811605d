#!/usr/bin/env python3
"""The dashboard in a real browser (Chromium, driven by selenium), against the built binary.

    python3 Tests/browser/dashboard.py BINARY SCREENSHOT_FOLDER

1. An operator logs in with the link `serve login` prints, sees a pending approval on the
   overview, opens it, approves it; `work-once` runs the task, and the overview, left open,
   shows it done on its own (live refresh, no reload).
2. A one-click link from an alert, opened in a fresh browser (no session), rejects a request.
3. axe-core checks the pages: no serious or critical violation (labels, contrast, …).

Exits 0 when every check held, 1 with the failed check's line otherwise. Run by
`BrowserEndToEndTests` (swift test) where Chromium, chromedriver and selenium are installed.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait
from axe_selenium_python import Axe

BINARY = os.path.abspath(sys.argv[1])
SHOTS = os.path.abspath(sys.argv[2])
os.makedirs(SHOTS, exist_ok=True)
FOLDER = tempfile.mkdtemp(prefix="autonomy-browser-")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"
ENV = dict(os.environ, AUTONOMY_CONFIG=f"{FOLDER}/autonomy.json", AUTONOMY_DATABASE=f"{FOLDER}/autonomy.db",
           HOME=FOLDER)


def autonomy(*arguments, check=True):
    done = subprocess.run([BINARY, *arguments], env=ENV, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        fail(f"autonomy {' '.join(arguments)} exited {done.returncode}: {done.stderr}")
    return done


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def key(name):
    line = autonomy("operator", "init", "--key", f"{FOLDER}/{name}", "--principal", name).stdout
    return next(l for l in line.splitlines() if l.startswith(name + " "))


signers = [key("elad"), key("autonomy-web")]
with open(f"{FOLDER}/allowed_signers", "w") as f:
    f.write("\n".join(signers) + "\n")
with open(f"{FOLDER}/alert.sh", "w") as f:
    f.write("#!/bin/sh\ncat >> \"$(dirname \"$0\")/alerts.txt\"\n")
os.chmod(f"{FOLDER}/alert.sh", 0o755)
config = {
    "version": 1,
    "approvals": {"allowed_signers": f"{FOLDER}/allowed_signers", "base_url": BASE},
    "serve": {"signing_key": f"{FOLDER}/autonomy-web"},
    "notify": {"command": [f"{FOLDER}/alert.sh"]},
    "producers": {"users": {"sales-bot": {"types": ["send_email", "report"]}}},
    "task_types": {
        "send_email": {"safety": "dangerous", "owner": "elad",
                       "handler": {"exec": {"argv": ["/bin/sh", "-c", "cat > sent.json"], "cwd": FOLDER}},
                       "verify": [{"command": {"argv": ["/bin/true"]}}]},
        "report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}},
    },
}
with open(f"{FOLDER}/autonomy.json", "w") as f:
    json.dump(config, f)

autonomy("enqueue", "report", "--source", "sales-bot", "--subject", "Acme Corp")
autonomy("enqueue", "send_email", "--payload", '{"to": "ceo@acme.example", "body": "Your invoice"}',
         "--source", "sales-bot", "--subject", "Acme Corp")
autonomy("work-once", "--drain")
server = subprocess.Popen([BINARY, "serve", "--listen", f"127.0.0.1:{PORT}"], env=ENV,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1400",
                     "--force-prefers-reduced-motion"):
        options.add_argument(argument)
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def accessible(driver, name):
    axe = Axe(driver)
    axe.inject()
    results = axe.run()
    serious = [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]
    for violation in serious:
        print(f"  axe {name}: {violation['id']}: {violation['help']} ({len(violation['nodes'])} nodes)")
    expect(not serious, f"axe finds no serious violation on {name}")


try:
    for _ in range(100):
        line = server.stderr.readline()
        if "listening on" in line:
            break
    else:
        fail("serve did not start")

    # 1. The operator's session: log in, see the request, approve it, watch it get done.
    login = autonomy("serve", "login", "--operator", "elad").stdout.strip()
    expect(login.startswith(f"{BASE}/login#t="), "serve login prints a link to this server")
    driver = browser()
    wait = WebDriverWait(driver, 20)
    driver.get(login)
    wait.until(EC.title_contains("Logged in"))
    expect("#t=" not in driver.current_url, "the token left the address bar")
    driver.get(f"{BASE}/")
    wait.until(EC.presence_of_element_located((By.ID, "waiting")))
    expect("Waiting for you: 1" in driver.find_element(By.ID, "waiting").text, "the overview shows one request waiting")
    expect("ceo@acme.example" in driver.page_source, "the overview shows the payload it waits on")
    driver.save_screenshot(f"{SHOTS}/dashboard.png")
    accessible(driver, "the overview")
    # On a phone's width, nothing makes the page scroll sideways (wide tables scroll in their box).
    driver.set_window_size(390, 844)
    driver.refresh()
    wait.until(EC.presence_of_element_located((By.ID, "waiting")))
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    driver.save_screenshot(f"{SHOTS}/phone.png")
    expect(overflow <= 1, f"the overview fits a phone's width (overflow {overflow}px)")
    driver.set_window_size(1100, 1400)
    driver.find_element(By.CSS_SELECTOR, "#main .item a").click()
    wait.until(EC.presence_of_element_located((By.XPATH, "//button[text()='Approve']")))
    expect("Payload, whole" in driver.page_source, "the request's page shows the whole payload")
    accessible(driver, "the request's page")
    driver.find_element(By.XPATH, "//button[text()='Approve']").click()
    wait.until(EC.title_contains("Approved"))
    expect(True, "approved from the request's page")
    driver.get(f"{BASE}/")
    wait.until(EC.presence_of_element_located((By.ID, "waiting")))
    expect("Nothing needs you" in driver.page_source, "nothing waits any more")
    autonomy("work-once", "--drain")
    # The overview is left open: it refreshes itself and shows the task done, with no reload.
    marker = driver.execute_script("window.__stayed = true; return window.__stayed")
    WebDriverWait(driver, 20).until(lambda d: re.search(r">done</a></td><td>2</td>", d.page_source))
    expect(driver.execute_script("return window.__stayed === true") and marker,
           "the open overview shows the task done on its own (no reload)")
    state = json.loads(autonomy("tasks", "show", "2", "--json").stdout)["state"]
    expect(state == "done", "the worker ran the approved task")
    driver.get(f"{BASE}/tasks/2")
    wait.until(EC.presence_of_element_located((By.TAG_NAME, "h1")))
    accessible(driver, "a task's page")
    driver.get(f"{BASE}/ledger")
    accessible(driver, "the ledger")
    driver.quit()

    # 2. A one-click link from an alert, in a fresh browser with no session: reject. The alert is
    # the server's to send (the worker leaves it to the server, whose links alone decide).
    def links():
        try:
            with open(f"{FOLDER}/alerts.txt") as f:
                return re.findall(re.escape(BASE) + r"/r/\d+#t=[A-Za-z0-9_-]+", f.read())
        except FileNotFoundError:
            return []
    before = len(links())
    autonomy("enqueue", "send_email", "--payload", '{"to": "cfo@acme.example", "body": "Refund"}',
             "--source", "sales-bot", "--subject", "Acme Corp")
    for _ in range(200):
        if len(links()) > before:
            break
        time.sleep(0.1)
    expect(len(links()) > before, "the server sends the new request's alert with a one-click link")
    links = links()
    fresh = browser()
    wait = WebDriverWait(fresh, 20)
    fresh.get(links[-1])
    wait.until(EC.presence_of_element_located((By.NAME, "reason")))
    expect("cfo@acme.example" in fresh.page_source, "the link shows the request it is about")
    fresh.find_element(By.NAME, "reason").send_keys("not this quarter")
    fresh.save_screenshot(f"{SHOTS}/one-click.png")
    fresh.find_element(By.XPATH, "//button[text()='Reject']").click()
    wait.until(EC.title_contains("Rejected"))
    state = json.loads(autonomy("tasks", "show", "3", "--json").stdout)["state"]
    expect(state == "rejected", "the link's Reject rejected the task")
    fresh.quit()
    print("all browser checks passed")
finally:
    server.terminate()
    server.wait(timeout=10)
    shutil.rmtree(FOLDER, ignore_errors=True)
