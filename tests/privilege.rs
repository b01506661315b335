//! `serve --user/--group`: bind first (a port below 1024 needs root), then run as the user
//! before accepting anyone; refuse to serve when that cannot be done.

mod common;

use std::io::Write;
use std::process::Command;

use common::{ServeProcess, run_hubcat};

fn id_of(flag: &str, user: &str) -> String {
    let out = Command::new("id").args([flag, user]).output().expect("id runs");
    String::from_utf8(out.stdout).expect("UTF-8").trim().to_string()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n")
}

#[test]
fn binds_port_80_as_root_then_serves_as_nobody() {
    if !is_root() {
        // Without root neither the port nor the drop is possible: it must refuse, not serve.
        let out = run_hubcat(&["serve", "127.0.0.1", "0", "--user", "nobody"], b"");
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error: cannot drop privileges to nobody"), "{stderr}");
        return;
    }
    let (uid, gid) = (id_of("-u", "nobody"), id_of("-g", "nobody"));
    let mut server = ServeProcess::start(&["127.0.0.1", "80", "--user", "nobody"]);
    assert!(
        server.stderr_seen.iter().any(|l| l.contains(&format!("running as nobody (uid {uid}, gid {gid})")))
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("procfs");
    let ids = |field: &str| -> Vec<String> {
        let line = status.lines().find(|l| l.starts_with(field)).expect("field");
        line.split_whitespace().skip(1).map(String::from).collect()
    };
    assert_eq!(ids("Uid:"), vec![uid.clone(); 4], "real, effective, saved and filesystem uid");
    assert_eq!(ids("Gid:"), vec![gid.clone(); 4]);
    assert_eq!(ids("Groups:"), [gid], "no supplementary groups of root's left");
    let mut client = std::net::TcpStream::connect("127.0.0.1:80").expect("served on port 80");
    client.write_all(b"hello from below 1024\n").expect("sends");
    server.wait_for_data_containing("hello from below 1024");
    drop(client);
    assert!(server.stop().status.success());
}

#[test]
fn an_unknown_user_or_a_group_alone_is_refused_before_binding() {
    let out = run_hubcat(&["serve", "127.0.0.1", "0", "--user", "no-such-user-here"], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no user named \"no-such-user-here\""), "{stderr}");
    assert!(!stderr.contains("listening on"), "refused before binding: {stderr}");
    let out = run_hubcat(&["serve", "127.0.0.1", "0", "--group", "nogroup"], b"");
    assert_eq!(out.status.code(), Some(2), "--group needs --user");
}
