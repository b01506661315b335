//! The `--proxy` URL: `SCHEME://[USER:PASS@]HOST:PORT`, checked once so dialling never meets a
//! malformed one. Credentials are kept out of `Debug` and `Display`, which may reach a log.

use std::fmt;
use std::str::FromStr;

use crate::addr::strip_brackets;

/// How the proxy is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5; the target name is resolved here and its address sent to the proxy.
    Socks5,
    /// SOCKS5; the target name is sent to the proxy, which resolves it.
    Socks5h,
    /// HTTP `CONNECT`.
    Http,
}

impl ProxyKind {
    /// The protocol's name in messages (`socks5h` is a SOCKS5 proxy all the same).
    pub fn protocol(self) -> &'static str {
        match self {
            ProxyKind::Socks5 | ProxyKind::Socks5h => "socks5",
            ProxyKind::Http => "http",
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
            ProxyKind::Http => "http",
        }
    }
}

/// A username and password, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}:***", self.user)
    }
}

/// A validated `--proxy` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyUrl {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

/// Why a `--proxy` URL was refused; the message says what to write instead.
#[derive(Debug, thiserror::Error)]
#[error("{0} (expected socks5://, socks5h:// or http:// [USER:PASS@]HOST:PORT)")]
pub struct ProxyUrlError(String);

impl ProxyUrl {
    /// How the proxy is spoken to.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host: a name or an address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.kind.scheme();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for ProxyUrl {
    type Err = ProxyUrlError;

    fn from_str(text: &str) -> Result<ProxyUrl, ProxyUrlError> {
        let fail = |why: String| Err(ProxyUrlError(why));
        let Some((scheme, rest)) = text.split_once("://") else {
            return fail(format!("{text:?} has no scheme"));
        };
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            "http" => ProxyKind::Http,
            other => return fail(format!("proxy scheme {other:?} is not supported")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return fail("a proxy URL has no path, query or fragment".into());
        }
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((userinfo, authority)) => (Some(userinfo), authority),
            None => (None, rest),
        };
        let Some((host, port)) = authority.rsplit_once(':') else {
            return fail(format!("the proxy {authority:?} has no port"));
        };
        let bracketed = host.starts_with('[');
        let host = strip_brackets(host);
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@') {
            return fail(format!("{host:?} is not a proxy host"));
        }
        if (bracketed || host.contains(':')) && !(bracketed && host.parse::<std::net::Ipv6Addr>().is_ok()) {
            return fail(format!("{host:?} is not a proxy host (an IPv6 address goes in brackets)"));
        }
        let port = match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return fail(format!("{port:?} is not a proxy port (1-65535)")),
        };
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => Some(credentials(kind, userinfo).map_err(ProxyUrlError)?),
        };
        Ok(ProxyUrl { kind, host: host.to_string(), port, credentials })
    }
}

fn credentials(kind: ProxyKind, userinfo: &str) -> Result<Credentials, String> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = percent_decode(user)?;
    let password = percent_decode(password)?;
    if user.is_empty() {
        return Err("the proxy username is empty".into());
    }
    // RFC 1929 gives each a one-byte length and no empty password.
    if kind != ProxyKind::Http && (user.len() > 255 || password.is_empty() || password.len() > 255) {
        return Err("a socks5 username and password are 1 to 255 bytes each".into());
    }
    if kind == ProxyKind::Http && user.contains(':') {
        return Err("an http proxy username cannot contain ':' (RFC 7617)".into());
    }
    Ok(Credentials { user, password })
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = crate::addr::percent_decode(text)
        .ok_or("a % in the proxy credentials is not followed by two hex digits")?;
    String::from_utf8(bytes).map_err(|_| "the proxy credentials are not UTF-8 once decoded".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProxyUrl, String> {
        text.parse::<ProxyUrl>().map_err(|e| e.to_string())
    }

    #[test]
    fn schemes_hosts_and_ports() {
        let url = parse("socks5h://127.0.0.1:1080").expect("valid");
        assert_eq!((url.kind(), url.host(), url.port()), (ProxyKind::Socks5h, "127.0.0.1", 1080));
        assert_eq!(url.credentials(), None);
        let url = parse("SOCKS5://[::1]:1080/").expect("valid");
        assert_eq!((url.kind(), url.host()), (ProxyKind::Socks5, "::1"));
        assert_eq!(url.to_string(), "socks5://[::1]:1080");
        let url = parse("http://proxy.example:3128").expect("valid");
        assert_eq!((url.kind(), url.host(), url.port()), (ProxyKind::Http, "proxy.example", 3128));
    }

    #[test]
    fn credentials_are_decoded_and_never_shown() {
        let url = parse("http://me%40home:p%3Ass@proxy:8080").expect("valid");
        let creds = url.credentials().expect("given");
        assert_eq!((creds.user.as_str(), creds.password.as_str()), ("me@home", "p:ss"));
        assert_eq!(url.to_string(), "http://proxy:8080");
        assert!(!format!("{url:?}").contains("p:ss"), "{url:?}");
        let url = parse("socks5://a:b@c@proxy:1080").expect("the last @ ends the userinfo");
        assert_eq!(url.credentials().map(|c| c.password.as_str()), Some("b@c"));
    }

    #[test]
    fn malformed_urls_say_why() {
        let cases = [
            ("127.0.0.1:1080", "no scheme"),
            ("https://proxy:443", "\"https\" is not supported"),
            ("socks4://proxy:1080", "not supported"),
            ("socks5://proxy", "no port"),
            ("socks5://proxy:0", "not a proxy port"),
            ("socks5://proxy:99999", "not a proxy port"),
            ("socks5://:1080", "not a proxy host"),
            ("socks5://::1:1080", "in brackets"),
            ("http://proxy:8080/path", "no path"),
            ("socks5://user@proxy:1080", "1 to 255 bytes"),
            ("socks5://:pass@proxy:1080", "username is empty"),
            ("http://u:%zz@proxy:8080", "two hex digits"),
            ("http://u:%ff@proxy:8080", "not UTF-8"),
        ];
        for (text, why) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains("expected socks5://"), "{err}");
        }
        assert!(parse(&format!("socks5://{}:p@proxy:1080", "u".repeat(256))).is_err());
        assert!(parse("http://user@proxy:8080").is_ok(), "an empty password is allowed in Basic auth");
    }
}
