//! `serve --web`: the console page in a real browser. Runs tests/web_console.py (Selenium,
//! headless Chromium) against the real binary: the page connects to its event stream, lists a
//! TCP client, shows its lines as text (no HTML injection), filters them, sends it a line from
//! the form by keyboard, is labelled and keyboard-reachable, and disconnects it.
//!
//! Needs `apt-get install -y chromium chromium-driver python3-selenium`; fails (never skips)
//! without them. `HUBCAT_SCREENSHOT=docs/console.png` also saves a screenshot of the page;
//! `HUBCAT_PYTHON` picks the interpreter.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::ServeProcess;

const APT: &str = "apt-get install -y chromium chromium-driver python3-selenium";
/// The script bounds each of its waits at 15 s; this bounds the whole run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);
/// The script's exit code when a dependency is missing.
const MISSING: i32 = 3;

/// The console's URL, from the server's `web console on http://ADDR/ ...` line (printed before
/// `listening on`, so usually among the lines already seen).
fn console_url(server: &mut ServeProcess) -> String {
    let line = match server.stderr_seen.iter().find(|l| l.contains("web console on")) {
        Some(line) => line.clone(),
        None => server.wait_for_event("web console on"),
    };
    let url = line.split("web console on ").nth(1).and_then(|rest| rest.split_whitespace().next());
    url.unwrap_or_else(|| panic!("no URL in {line:?}")).to_string()
}

/// A Python 3 that has Selenium: `$HUBCAT_PYTHON`, `python3` on the PATH, or Debian's.
fn python_with_selenium() -> String {
    let candidates: Vec<String> = std::env::var("HUBCAT_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()])
        .collect();
    for python in &candidates {
        let found = Command::new(python)
            .args(["-c", "import selenium"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return python.clone();
        }
    }
    panic!("no Python 3 with Selenium (tried {candidates:?}); the browser test needs: {APT}");
}

fn read_all(pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = { pipe }.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[test]
fn console_page_works_in_headless_chromium() {
    let python = python_with_selenium();
    let mut server =
        ServeProcess::start(&["127.0.0.1", "0", "--web", "127.0.0.1:0", "--greeting", "Let's GO!"]);
    let url = console_url(&mut server);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web_console.py");
    let mut command = Command::new(&python);
    command.arg(script).arg(&url).arg(server.addr.to_string());
    if let Some(path) = std::env::var_os("HUBCAT_SCREENSHOT") {
        command.arg(path);
    }
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; the browser test needs: {APT}"));
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "--- {python} tests/web_console.py {url} {} ---\n{}{}",
        server.addr,
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    println!("{output}");
    let Some(status) = status else {
        panic!("the browser test did not finish within {SCRIPT_LIMIT:?}\n{output}");
    };
    assert_ne!(status.code(), Some(MISSING), "the browser test needs: {APT}\n{output}");
    assert!(status.success(), "the browser test failed ({status})\n{output}");
}
