//! hubcat: a multi-client TCP server and client for seeing, recording and relaying what many
//! clients send; the textbook Go server and client of `tcp-server-textbook.txt`, done properly.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | validated settings; every limit and timeout, named once |
//! | [`access`] | `--allow`/`--deny` rules, replaceable while serving |
//! | [`addr`] | host/port resolution, binding (dual-stack, shared port 0) |
//! | [`error`] | error classes (transient or not) and one-line messages |
//! | [`shutdown`] | the handle that asks a server or client to stop |
//! | [`framing`] | line splitting with a maximum length, no I/O |
//! | [`output`] | record formats, escaping, the sink's single writer |
//! | [`tls`] | rustls pieces both sides use; the server's certificate, replaceable while serving |
//! | [`unix`] | Unix-socket addresses, binding (stale files replaced, live ones kept), dialing |
//! | [`server`] | `hubcat serve`: accept loop, connections, drain |
//! | [`client`] | `hubcat connect`: dial with retries, interactive and piped sessions |
//! | `web` | `serve --web`: the live console, /metrics and the JSON API (feature `web`) |
//! | `bench` | `hubcat bench`: load scenarios against any TCP server on this machine (feature `bench`) |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod addr;
#[cfg(feature = "bench")]
pub mod bench;
pub mod client;
pub mod config;
pub mod error;
pub mod framing;
mod notify;
pub mod output;
mod scan;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod unix;
#[cfg(feature = "web")]
pub mod web;

pub use config::{ConnectConfig, ServerConfig, ServerSettings};
pub use error::NetError;
pub use output::{Format, Sink, Style, Target};
pub use server::Summary;
pub use shutdown::Shutdown;
