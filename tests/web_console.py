#!/usr/bin/env python3
"""End-to-end test of hubcat's web console in headless Chromium.

    python3 tests/web_console.py CONSOLE_URL HOST:PORT [SCREENSHOT.png]

CONSOLE_URL is the page (`web console on ...` in the server's log), HOST:PORT the server's TCP
address (`listening on ...`). Drives the page like a user would, with real TCP clients on the
other side, and exits 0 only if every step passes. Run by tests/web_browser.rs.

Needs (Debian/Ubuntu): apt-get install -y chromium chromium-driver python3-selenium
"""

import argparse
import os
import socket
import sys
import time
import traceback

APT = "apt-get install -y chromium chromium-driver python3-selenium"
MISSING = 3  # exit code: a dependency is missing

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError as err:
    print(f"missing: Python's selenium ({err}); install: {APT}", file=sys.stderr)
    sys.exit(MISSING)

WAIT = 15  # seconds, the bound on every wait
INJECTION = "hello <img src=x onerror=\"document.title='pwned'\"> & <b>bold</b>"


class Failed(Exception):
    pass


class Client:
    """A TCP client of the hubcat server, reading what it is sent."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=WAIT)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.eof = False

    def send_line(self, text):
        self.sock.sendall(text.encode() + b"\n")

    def _read(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.received += chunk
        return True

    def wait_for(self, data, what):
        deadline = time.monotonic() + WAIT
        while data not in self.received:
            if self.eof or not self._read(deadline):
                raise Failed(f"{what}: client :{self.port} did not receive {data!r} "
                             f"within {WAIT} s (eof={self.eof}; got {self.received[-300:]!r})")

    def wait_eof(self, what):
        deadline = time.monotonic() + WAIT
        while not self.eof:
            if not self._read(deadline):
                raise Failed(f"{what}: client :{self.port} still connected after {WAIT} s")

    def drain(self):
        """Reads what has arrived so far without waiting."""
        self._read(time.monotonic() + 0.05)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Console:
    """The page, in a browser."""

    def __init__(self, url):
        self.url = url
        options = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--disable-gpu", "--hide-scrollbars",
                    "--force-color-profile=srgb", "--disable-extensions", "--no-first-run",
                    "--lang=en-US"):
            options.add_argument(arg)
        binary = os.environ.get("CHROMIUM")
        if binary:
            options.binary_location = binary
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver_path = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
        if not os.path.exists(driver_path):
            print(f"missing: chromedriver at {driver_path}; install: {APT}", file=sys.stderr)
            sys.exit(MISSING)
        try:
            self.driver = webdriver.Chrome(service=Service(driver_path), options=options)
        except WebDriverException as err:
            print(f"missing: cannot start Chromium ({err.msg}); install: {APT}", file=sys.stderr)
            sys.exit(MISSING)
        self.driver.set_page_load_timeout(WAIT)
        self.driver.set_script_timeout(WAIT)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def until(self, condition, what):
        """Waits up to WAIT seconds for `condition(driver)` to be truthy; returns its value."""
        try:
            return WebDriverWait(self.driver, WAIT, poll_frequency=0.05).until(
                lambda d: condition(d))
        except TimeoutException:
            raise Failed(f"{what}: not within {WAIT} s") from None

    def el(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def stream_status(self):
        return self.js("return document.getElementById('stream-status').textContent.trim()")

    def row(self, port):
        """The connections table's row for the client on local port `port`, as a dict, or None."""
        return self.js("""
            const suffix = ':' + arguments[0];
            for (const tr of document.querySelectorAll('#rows tr')) {
                const cells = [...tr.cells].map(td => td.textContent.trim());
                if (cells[1].endsWith(suffix)) {
                    return {id: cells[0], peer: cells[1], nick: cells[2], age: cells[3],
                            idle: cells[4], bytes_in: cells[5], bytes_out: cells[6]};
                }
            }
            return null;""", str(port))

    def log_line(self, text):
        """The transcript's line ending in `text`: {'shown': bool, 'text': ...}, or None."""
        return self.js("""
            for (const div of document.getElementById('log').children) {
                if (div.textContent.endsWith(arguments[0])) {
                    return {shown: !div.hidden && div.offsetParent !== null, text: div.textContent};
                }
            }
            return null;""", text)

    def clear_input(self, element):
        element.send_keys(Keys.CONTROL, "a")
        element.send_keys(Keys.BACK_SPACE)

    def severe_logs(self):
        try:
            entries = self.driver.get_log("browser")
        except WebDriverException:
            return []
        return [e["message"] for e in entries
                if e.get("level") == "SEVERE" and "favicon.ico" not in e["message"]]

    def quit(self):
        try:
            self.driver.quit()
        except WebDriverException:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the console's URL")
    parser.add_argument("addr", help="the hubcat server's TCP address, HOST:PORT")
    parser.add_argument("screenshot", nargs="?", help="save a screenshot of the page here")
    args = parser.parse_args()
    host, _, port = args.addr.rpartition(":")
    addr = (host.strip("[]"), int(port))

    started = time.monotonic()
    clients = []
    console = None
    current = "start the browser"

    def step(name):
        nonlocal current
        current = name
        print(f"-- {name}", flush=True)

    try:
        console = Console(args.url)
        print(f"   browser up in {time.monotonic() - started:.1f} s", flush=True)

        step("1. the page loads and its event stream connects")
        console.driver.get(args.url)
        if console.driver.title != "hubcat console":
            raise Failed(f"title is {console.driver.title!r}, expected 'hubcat console'")
        console.until(lambda d: console.stream_status() == "connected",
                      "the stream status never said 'connected' "
                      f"(it says {console.stream_status()!r})")

        step("2. a TCP client shows up in the connections table")
        client = Client(addr)
        clients.append(client)
        row = console.until(lambda d: console.row(client.port),
                            f"no row with peer ...:{client.port} in the connections table")
        print(f"   row: {row}")
        if not row["id"].isdigit():
            raise Failed(f"the ID cell says {row['id']!r}")
        client_id = row["id"]
        button = console.el(f'#rows button[aria-label="Disconnect connection {client_id}"]')
        if button.text.strip() != "Disconnect":
            raise Failed(f"the row's button says {button.text!r}")

        step("3. a line with HTML in it is shown as text, never as markup")
        client.send_line(INJECTION)
        line = console.until(lambda d: console.log_line(INJECTION),
                             f"the transcript never showed {INJECTION!r}")
        expected = f"{row['peer']} {INJECTION}"
        if line["text"] != expected:
            raise Failed(f"the transcript line is {line['text']!r}, expected {expected!r}")
        if not line["shown"]:
            raise Failed("the line is in the transcript but not visible")
        markup = console.js("return document.querySelectorAll('#log img, #log b').length")
        if markup:
            raise Failed(f"{markup} img/b elements inside the transcript: HTML was injected")
        if console.js("return document.querySelectorAll('img').length"):
            raise Failed("an img element exists in the page")
        if console.driver.title == "pwned":
            raise Failed("the title is 'pwned': a client's line ran script")

        step("4. the filter hides and shows lines, new ones too")
        filter_box = console.el("#filter")
        if filter_box.get_attribute("type") != "search":
            raise Failed("the filter is not an <input type=search>")
        filter_box.send_keys("HELLO <IMG")  # case-insensitive substring: still shown
        time.sleep(0.1)
        if not console.log_line(INJECTION)["shown"]:
            raise Failed("filter 'HELLO <IMG' hid a line containing 'hello <img'")
        console.clear_input(filter_box)
        filter_box.send_keys("no such text")
        console.until(lambda d: not console.log_line(INJECTION)["shown"],
                      "filter 'no such text' did not hide the line")
        client.send_line("a later line")
        later = console.until(lambda d: console.log_line("a later line"),
                              "the transcript never showed 'a later line'")
        if later["shown"]:
            raise Failed("a new line that does not match the filter is shown")
        console.clear_input(filter_box)
        console.until(lambda d: console.log_line(INJECTION)["shown"]
                      and console.log_line("a later line")["shown"],
                      "clearing the filter did not show the lines again")

        step("5. the send form answers one client, submitted with the keyboard")
        to = Select(console.el("#to"))
        console.until(lambda d: any(o.get_attribute("value") == client_id for o in to.options),
                      f"no option for connection {client_id} in the To select")
        if to.options[0].text.strip() != "All clients" or to.options[0].get_attribute("value") != "":
            raise Failed(f"the first To option is {to.options[0].text!r}, expected 'All clients'")
        to.select_by_value(client_id)
        line_box = console.el("#line")
        line_box.click()
        line_box.send_keys("reply from the browser", Keys.ENTER)
        client.wait_for(b"reply from the browser\n", "the line sent from the page")
        console.until(lambda d: "sent to 1 client" in console.el("#send-status").text.lower(),
                      "the status never said 'Sent to 1 client' "
                      f"(it says {console.el('#send-status').text!r})")
        if line_box.get_attribute("value") != "":
            raise Failed("the line input was not cleared after sending")
        time.sleep(1.2)  # a connection list or two arrives: the choice must survive it
        if to.first_selected_option.get_attribute("value") != client_id:
            raise Failed("the To select lost the user's choice when the list was refreshed")

        step("6. accessibility: labels, button names, keyboard reach")
        problems = console.js("""
            const problems = [];
            const named = (el) => (el.getAttribute('aria-label') || '').trim() ||
                (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
                    .map(id => (document.getElementById(id) || {}).textContent || '').join(' ').trim();
            for (const el of document.querySelectorAll('input, select, textarea')) {
                const label = el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]');
                if (!(label && label.textContent.trim()) && !named(el)) {
                    problems.push('no label: ' + el.outerHTML.slice(0, 120));
                }
            }
            for (const b of document.querySelectorAll('button')) {
                if (!named(b) && !b.textContent.trim()) problems.push('no name: ' + b.outerHTML.slice(0, 120));
            }
            if (!document.documentElement.lang) problems.push('no lang on <html>');
            const vp = document.querySelector('meta[name=viewport]');
            if (!vp || !vp.content.includes('width=device-width')) problems.push('no viewport meta');
            if (!document.querySelector('[role=log]')) problems.push('no role=log');
            const status = document.getElementById('send-status');
            if (!status || status.getAttribute('aria-live') !== 'polite') problems.push('send status not aria-live=polite');
            for (const th of document.querySelectorAll('thead th')) {
                if (th.getAttribute('scope') !== 'col') problems.push('th without scope=col');
            }
            return problems;""")
        if problems:
            raise Failed("; ".join(problems))
        # From the page start: a click on the (unfocusable) heading moves the point where
        # sequential focus navigation starts.
        console.js("if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0);")
        ActionChains(console.driver).click(console.el("h1")).perform()
        wanted = {"filter", "to", "line", "send"}
        reached = []
        for _ in range(30):
            ActionChains(console.driver).send_keys(Keys.TAB).perform()
            active = console.js("""
                const a = document.activeElement;
                return a ? (a.id || a.tagName.toLowerCase() + (a.getAttribute('aria-label')
                    ? '[' + a.getAttribute('aria-label') + ']' : '')) : null;""")
            reached.append(active)
            if wanted <= set(reached):
                break
        missing = wanted - set(reached)
        if missing:
            raise Failed(f"Tab never reached {sorted(missing)}; order was {reached}")
        print(f"   tab order: {' > '.join(str(r) for r in reached)}")
        focus_outline = console.js("""
            const el = document.getElementById('send');
            el.focus();
            const s = getComputedStyle(el);
            return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;""")
        if not focus_outline:
            raise Failed("the focused Send button has no visible outline")

        if args.screenshot:
            step("7. a tidy page for the screenshot")
            console.driver.get(args.url)
            console.until(lambda d: console.stream_status() == "connected",
                          "the stream did not reconnect after reloading")
            more = [Client(addr), Client(addr)]
            clients.extend(more)
            console.until(lambda d: all(console.row(c.port) for c in more),
                          "the two new clients never showed up in the table")
            ivo, ana = more
            chat = [
                (ivo, "IVO says: Hi Server, what's up?"),
                (client, "GET /status HTTP/1.0"),
                (ana, "ANA says: hello all, is the build green?"),
                (ivo, "IVO says: deploying 1.4.2 to staging now"),
                (client, "ping 42"),
                (ana, "ANA says: thanks, I'll watch the logs"),
                (ivo, "IVO says: migrations ran in 3.2 s, no errors"),
                (client, "ping 43"),
                (ana, "ANA says: error rate flat, latency p99 at 41 ms"),
                (ivo, "IVO says: done, all checks passed"),
                (ana, "ANA says: nice work :)"),
            ]
            for who, text in chat:
                who.send_line(text)
                time.sleep(0.15)
            console.until(lambda d: console.log_line(chat[-1][1]),
                          "the chat lines did not reach the transcript")
            Select(console.el("#to")).select_by_value("")
            line_box = console.el("#line")
            line_box.send_keys("Welcome! The server restarts at 18:00 UTC.", Keys.ENTER)
            console.until(lambda d: "sent to 3 clients" in console.el("#send-status").text.lower(),
                          "the status never said 'Sent to 3 clients'")
            console.js("document.getElementById('line').value = 'Thanks, everyone';"
                       "document.activeElement.blur();")
            time.sleep(1.3)  # a fresh connection list with the new byte counts
            path = os.path.abspath(args.screenshot)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not console.driver.save_screenshot(path):
                raise Failed(f"could not save the screenshot to {path}")
            print(f"   saved {args.screenshot} ({os.path.getsize(args.screenshot)} bytes)")
            for c in more:
                c.drain()

        step("8. Disconnect closes the client's connection and removes its row")
        button = console.el(f'#rows button[aria-label="Disconnect connection {client_id}"]')
        button.click()
        client.wait_eof("the disconnected client")
        console.until(lambda d: console.row(client.port) is None,
                      f"the row of connection {client_id} stayed in the table")
        console.until(lambda d: "disconnected connection" in console.el("#send-status").text.lower(),
                      "the status never confirmed the disconnect")

        step("9. no errors in the browser's console (CSP, script)")
        errors = console.severe_logs()
        if errors:
            raise Failed("browser console errors: " + " | ".join(errors))
    except Failed as err:
        print(f"FAIL at step '{current}': {err}", file=sys.stderr)
        report(console)
        return 1
    except Exception:  # noqa: BLE001 - any surprise is a failure with its trace
        print(f"FAIL at step '{current}' with an exception:", file=sys.stderr)
        traceback.print_exc()
        report(console)
        return 1
    finally:
        for c in clients:
            c.close()
        if console:
            console.quit()
    print(f"PASS: web console end-to-end in {time.monotonic() - started:.1f} s", flush=True)
    return 0


def report(console):
    """What the page looked like when a step failed."""
    if console is None:
        return
    try:
        for message in console.severe_logs():
            print(f"   browser console: {message}", file=sys.stderr)
        text = console.js("return document.body ? document.body.innerText : ''")
        print("   page text:\n" + "\n".join("   | " + l for l in text.splitlines()[:60]),
              file=sys.stderr)
    except Exception as err:  # noqa: BLE001
        print(f"   (could not read the page: {err})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
