//! Real proxies for the tests, from Debian packages: dante (`danted`, SOCKS5) and tinyproxy
//! (HTTP CONNECT), each on a free loopback port with its own config in a temporary directory,
//! run in the foreground and stopped when dropped. A missing binary fails the test, naming
//! the package to install.
//!
//! Dante's `username` method checks the system's password database. So that no system user
//! is added, the authenticating dante runs in a private mount namespace (`unshare -m`, as
//! root) where a copy of /etc/passwd with one more user and a one-line /etc/shadow are bind
//! mounted; the same trick gives it an /etc/hosts with a name only the proxy can resolve.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::LIMIT;

/// The SOCKS5 user the authenticating dante knows.
pub const SOCKS_USER: &str = "hubcatproxy";
/// Its password.
pub const SOCKS_PASSWORD: &str = "s3cret";
/// `openssl passwd -6 -salt hubcatsalt s3cret`
const SOCKS_PASSWORD_HASH: &str =
    "$6$hubcatsalt$sZ5k9VCTRW1Qt8SkDU//.TsuvACrD9BmnwDAJHMx8UPCq.0R2kQ1wPD8cF/Cmpz8lUL91x6lVxb6DOBtX8eNj/";
/// A name in the dante namespace's /etc/hosts only.
pub const PROXY_ONLY_NAME: &str = "proxy-side.hubcat.test";

/// A proxy process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proxy {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    name: &'static str,
}

pub use crate::common::free_port;

/// The path of `binary` (on PATH, or in /usr/sbin, which a non-login PATH may lack); fails
/// the test when it is missing, naming the Debian package that has it.
fn require(binary: &str, package: &str) -> String {
    let runs = |path: &str| {
        Command::new(path).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    };
    let sbin = format!("/usr/sbin/{binary}");
    match [binary, &sbin].into_iter().find(|path| runs(path)) {
        Some(path) => path.to_string(),
        None => panic!("`{binary}` is missing: apt-get install -y {package} (.ci/run installs it)"),
    }
}

/// How the dante under test is set up.
#[derive(Default)]
pub struct DanteSetup {
    /// `socksmethod: username` with [`SOCKS_USER`] instead of `none`.
    pub username_auth: bool,
    /// Connections to this port are blocked by a rule (reply 2).
    pub blocked_port: Option<u16>,
    /// [`PROXY_ONLY_NAME`] resolves to 127.0.0.1 for the proxy.
    pub proxy_only_name: bool,
}

impl Proxy {
    /// Starts `danted` as `setup` says.
    pub fn dante(setup: DanteSetup) -> Proxy {
        let danted = require("danted", "dante-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let method = if setup.username_auth { "username" } else { "none" };
        let block = setup.blocked_port.map_or(String::new(), |p| {
            format!("socks block {{ from: 0.0.0.0/0 to: 127.0.0.1/32 port = {p} command: connect }}\n")
        });
        let config = format!(
            "logoutput: {log}\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
             clientmethod: none\nsocksmethod: {method}\nuser.privileged: root\nuser.unprivileged: nobody\n\
             client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n{block}\
             socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }}\n",
            log = dir.path().join("proxy.log").display(),
        );
        let conf = write(dir.path(), "danted.conf", &config);
        let pid = dir.path().join("danted.pid");
        let exec = format!("exec {danted} -f '{}' -p '{}'", conf.display(), pid.display());
        let mut mounts = Vec::new();
        if setup.username_auth {
            let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
            let user = format!("{SOCKS_USER}:x:64999:64999::/nonexistent:/usr/sbin/nologin\n");
            mounts.push((write(dir.path(), "passwd", &(passwd + &user)), "/etc/passwd"));
            let shadow = format!("{SOCKS_USER}:{SOCKS_PASSWORD_HASH}:19000:0:99999:7:::\n");
            mounts.push((write(dir.path(), "shadow", &shadow), "/etc/shadow"));
        }
        if setup.proxy_only_name {
            let hosts = format!("127.0.0.1 localhost {PROXY_ONLY_NAME}\n::1 localhost\n");
            mounts.push((write(dir.path(), "hosts", &hosts), "/etc/hosts"));
        }
        let mut command = if mounts.is_empty() {
            let mut command = Command::new(&danted);
            command.arg("-f").arg(&conf).arg("-p").arg(&pid);
            command
        } else {
            // A private namespace: the bind mounts are seen by this dante alone.
            let binds: Vec<String> = mounts
                .iter()
                .map(|(file, over)| format!("mount --bind '{}' {over} && ", file.display()))
                .collect();
            let mut command = Command::new("unshare");
            command.args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &format!("{}{exec}", binds.concat()),
            ]);
            command
        };
        let child =
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr_file(dir.path())).spawn();
        let child = child.expect("danted starts");
        Proxy::wait_until_listening(Proxy { child, port, dir, name: "danted" })
    }

    /// Starts `tinyproxy`, allowing CONNECT to `connect_ports` only, with Basic auth when
    /// `credentials` are given.
    pub fn tinyproxy(connect_ports: &[u16], credentials: Option<(&str, &str)>) -> Proxy {
        let tinyproxy = require("tinyproxy", "tinyproxy");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut config = format!(
            "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nMaxClients 16\n\
             LogLevel Info\nLogFile \"{}\"\n",
            dir.path().join("proxy.log").display()
        );
        for allowed in connect_ports {
            config.push_str(&format!("ConnectPort {allowed}\n"));
        }
        if let Some((user, password)) = credentials {
            config.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf = write(dir.path(), "tinyproxy.conf", &config);
        let child = Command::new(tinyproxy)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file(dir.path()))
            .spawn()
            .expect("tinyproxy starts");
        Proxy::wait_until_listening(Proxy { child, port, dir, name: "tinyproxy" })
    }

    fn wait_until_listening(mut proxy: Proxy) -> Proxy {
        let deadline = Instant::now() + LIMIT;
        while TcpStream::connect(("127.0.0.1", proxy.port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("{} exited at start ({status}):\n{}", proxy.name, proxy.logs());
            }
            assert!(Instant::now() < deadline, "{} did not listen:\n{}", proxy.name, proxy.logs());
            thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    /// What the proxy logged, for a failing test's message.
    pub fn logs(&self) -> String {
        ["proxy.log", "stderr.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM, so dante's mother process takes its children with it.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a proxy file");
    path
}

fn stderr_file(dir: &Path) -> std::fs::File {
    std::fs::File::create(dir.join("stderr.log")).expect("create the stderr log")
}

/// A TCP echo server on 127.0.0.1 (threads, one per connection); returns its port.
pub fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("bound").port();
    thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            thread::spawn(move || {
                let Ok(mut reader) = conn.try_clone() else { return };
                let mut writer = conn;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
    port
}
