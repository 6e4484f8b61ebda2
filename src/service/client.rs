//! The HTTP client of the agent, the CLI verbs that talk to a controller, and the load test:
//! ureq (keep-alive, timeouts) over rustls for `https://`, verifying the controller's certificate
//! against `--ca-file` when given (else the public web roots). Plain `http://` is for loopback;
//! another host needs `allow_plain` (the bearer token would cross the network in clear).

use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// A controller's address and how to reach it.
#[derive(Clone)]
pub struct Client {
    base: String,
    host: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// How a client connects.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// PEM file of the CA (or the self-signed certificate) that signed the controller's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Allow `http://` to a host outside loopback.
    pub allow_plain: bool,
}

/// Longest time one request to the controller may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// True when `host` (a name or address, without port) resolves only to loopback addresses.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    match (h, 0).to_socket_addrs() {
        Ok(addrs) => {
            let v: Vec<_> = addrs.collect();
            !v.is_empty() && v.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// `scheme://host[:port][/]` → (https?, host).
fn parse_base(url: &str) -> Result<(bool, String), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}`: not a URL ({e}); expected http(s)://host:port"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "`{url}`: the controller URL must start with http:// or https://"
            ))
        }
    };
    let auth = uri.authority().map(|a| a.as_str()).unwrap_or("");
    if auth.contains('@') || !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{url}`: expected scheme://host:port with no user, path or query"
        ));
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok((https, h.to_string())),
        _ => Err(format!("`{url}`: no host")),
    }
}

/// Read every certificate of a PEM file.
fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("--ca-file {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "--ca-file {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

impl Client {
    /// A client for the controller at `url` (`http://host:port` or `https://host:port`).
    pub fn new(url: &str, token: Option<&str>, opts: &ClientOptions) -> Result<Self, String> {
        let (https, host) = parse_base(url)?;
        if !https && !opts.allow_plain && !is_loopback(&host) {
            return Err(format!(
                "`{url}`: plain http:// is only for loopback (the token would cross the network in \
                 clear); serve with --tls-cert/--tls-key and use https://, or pass --allow-plain-http"
            ));
        }
        if !https && opts.ca_file.is_some() {
            return Err(format!(
                "`{url}`: --ca-file needs an https:// controller URL"
            ));
        }
        let roots = match &opts.ca_file {
            Some(p) => RootCerts::Specific(Arc::new(read_ca(p)?)),
            None => RootCerts::WebPki,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .proxy(None)
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        Ok(Client {
            base: url.trim_end_matches('/').to_string(),
            host,
            token: token.map(str::to_string),
            agent,
        })
    }

    /// The controller's host (name or address, without port).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Send one request (JSON body when given); returns the status code and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.base);
        let mut b = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            b = b.header("Authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            b = b.header("Content-Type", "application/json");
        }
        let req = b
            .body(body.unwrap_or("").to_string())
            .map_err(|e| format!("{url}: {e}"))?;
        let mut resp = self.agent.run(req).map_err(|e| describe(&self.base, e))?;
        let code = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        Ok((code, text))
    }

    /// Send one request with a JSON body (when given) and read a JSON reply; a status outside
    /// 2xx is an error naming the method, path, status and reply.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let b = body.map(serde_json::Value::to_string);
        let (code, text) = self.request(method, path, b.as_deref())?;
        if !(200..300).contains(&code) {
            return Err(format!("{method} {path}: HTTP {code}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}"))
    }
}

/// How an error message starts when the controller could not be reached at all (not up yet,
/// restarting): callers that wait for it match on this.
pub const UNREACHABLE: &str = "cannot connect to the controller";

/// ureq's error, with the controller's address and a hint for the common TLS mistakes.
fn describe(base: &str, e: ureq::Error) -> String {
    use std::io::ErrorKind as K;
    let unreachable = match &e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused | K::ConnectionReset | K::NotConnected | K::AddrNotAvailable
        ),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        _ => false,
    };
    if unreachable {
        return format!("{UNREACHABLE} at {base}: {e}");
    }
    let s = e.to_string();
    let hint = if s.contains("CaUsedAsEndEntity") {
        " (the controller serves a CA certificate (basicConstraints CA:TRUE) as its own: serve a \
         leaf certificate signed by that CA, and pass the CA with --ca-file)"
    } else if s.contains("NotValidForName") {
        " (the certificate does not name this host: connect by a name or address it lists)"
    } else if s.contains("UnknownIssuer") || s.contains("invalid peer certificate") {
        " (pass --ca-file with the CA that signed the controller's certificate)"
    } else if s.contains("InvalidContentType") || s.contains("corrupt message") {
        " (is the controller serving plain http://?)"
    } else {
        ""
    };
    format!("request to the controller at {base} failed: {s}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let o = ClientOptions::default();
        assert!(Client::new("http://127.0.0.1:8080", None, &o).is_ok());
        assert!(Client::new("http://localhost:8080/", None, &o).is_ok());
        assert!(Client::new("http://[::1]:8080", None, &o).is_ok());
        assert!(Client::new("https://10.0.0.1:8443", None, &o).is_ok());
        let e = Client::new("http://10.0.0.1:8080", None, &o).err().unwrap();
        assert!(e.contains("--allow-plain-http"), "{e}");
        let plain = ClientOptions {
            allow_plain: true,
            ..o.clone()
        };
        assert!(Client::new("http://10.0.0.1:8080", None, &plain).is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://x:1",
            "http://",
            "http://a:1/v1",
            "http://u@h:1",
        ] {
            assert!(Client::new(bad, None, &o).is_err(), "{bad}");
        }
        let ca = ClientOptions {
            ca_file: Some("/nonexistent.pem".into()),
            ..o
        };
        let e = Client::new("https://127.0.0.1:1", None, &ca).err().unwrap();
        assert!(e.contains("--ca-file /nonexistent.pem"), "{e}");
    }
}
