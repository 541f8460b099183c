//! OTLP/HTTP endpoint URLs: `http[s]://host[:port][/path]`.

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A parsed endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Host name or address, without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

impl Endpoint {
    /// Parses a URL; the error says what is wrong (the caller adds where it came from).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            return Err(format!("{url:?} does not start with http:// or https://"));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if path.contains(['?', '#']) {
            return Err(format!(
                "{url:?}: query strings and fragments are not supported"
            ));
        }
        if authority.contains('@') {
            return Err(format!(
                "{url:?}: credentials in the URL are not supported; use headers"
            ));
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((h, after)) = v6.split_once(']') else {
                return Err(format!("{url:?}: unclosed '[' in the host"));
            };
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(url, p)?,
                None if after.is_empty() => default_port,
                None => return Err(format!("{url:?}: unexpected {after:?} after the host")),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, parse_port(url, p)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Self {
            scheme,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The base endpoint with `v1/<signal>` appended to its path.
    pub fn join_signal(mut self, signal_path: &str) -> Self {
        if !self.path.ends_with('/') {
            self.path.push('/');
        }
        self.path.push_str(signal_path);
        self
    }

    /// The Host header value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = matches!(
            (self.scheme, self.port),
            (Scheme::Http, 80) | (Scheme::Https, 443)
        );
        if default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

fn parse_port(url: &str, p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "{url:?}: port {p:?} is not a number from 1 to 65535"
        )),
        Ok(n) => Ok(n),
    }
}

/// Parses an endpoint and names the source in the error.
pub(crate) fn parse_from(source: &str, url: &str) -> Result<Endpoint, Error> {
    Endpoint::parse(url.trim()).map_err(|m| Error::new(source, m))
}
