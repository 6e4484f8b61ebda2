//! A small blocking HTTP/1.1 client for the agent and the load test (one request per
//! connection, JSON bodies): enough for talking to our own controller without another crate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `http://host:port` → `host:port`.
pub fn host_of(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http://host:port URLs are supported"))?;
    Ok(rest.trim_end_matches('/').to_string())
}

/// Send one request; returns the status code and the body.
pub fn request(
    host: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut c = TcpStream::connect(host).map_err(|e| format!("cannot connect to {host}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let b = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(c, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{b}", b.len())
        .map_err(|e| format!("{host}: {e}"))?;
    let mut out = Vec::new();
    c.read_to_end(&mut out)
        .map_err(|e| format!("{host}: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{host}: not an HTTP response"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
