//! `web_fetch`: reads a web page and returns it as Markdown (HTML) or text, a slice at a time.
//!
//! The URL comes from a model, so the fetch is treated as hostile: every hop's host is resolved
//! here and checked by [`address_policy`](auxot_common::address_policy), and the connection is pinned to
//! the checked addresses (a fresh client per hop with `resolve_to_addrs`) so a second DNS answer
//! cannot point it elsewhere. Redirects are followed by hand for the same reason, each hop checked
//! again. Proxies from the environment are ignored: a proxy would make the connection to an
//! address this code never saw. The body is read up to `max_bytes` and the whole fetch has one
//! deadline.
//!
//! Long pages are returned in character slices (`offset`, `limit`) rather than cut off, so a model
//! can read on; `total_chars` and `truncated` tell it whether to.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use auxot_common::address_policy;
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::ToolInfo;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use serde::Deserialize;
use serde_json::{json, Value};
use url::{Host, Url};

use super::http::{read_capped, upstream, USER_AGENT};
use super::input;
use super::runner::Tool;

const NAME: &str = "web_fetch";

/// Characters returned when the caller gives no `limit`.
const DEFAULT_LIMIT: usize = 20_000;

/// Elements whose text is not page content.
const SKIPPED_TAGS: &[&str] = &["script", "style", "noscript", "template", "svg", "head"];

/// `[web_fetch]` in the tools configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFetchConfig {
    /// Allow loopback, private, link-local and other internal addresses (off: SSRF protection).
    #[serde(default)]
    pub allow_private: bool,
    /// Bytes of a response body read at most; the rest is not downloaded.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Time for the whole fetch, redirects and body included.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Redirects followed before giving up.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: usize,
}

fn default_max_bytes() -> usize {
    2 * 1024 * 1024
}

fn default_timeout_secs() -> u64 {
    20
}

fn default_max_redirects() -> usize {
    5
}

impl Default for WebFetchConfig {
    fn default() -> Self {
        WebFetchConfig {
            allow_private: false,
            max_bytes: default_max_bytes(),
            timeout_secs: default_timeout_secs(),
            max_redirects: default_max_redirects(),
        }
    }
}

impl WebFetchConfig {
    /// Checks what serde cannot: values in range.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.max_bytes == 0 || self.timeout_secs == 0 {
            anyhow::bail!("[web_fetch] max_bytes and timeout_secs must be greater than 0");
        }
        Ok(())
    }
}

pub struct WebFetch {
    config: WebFetchConfig,
    /// Addresses a test treats as public, to stand in for an outside site on loopback.
    #[cfg(test)]
    exempt: Vec<std::net::IpAddr>,
}

/// A response as read, before conversion.
struct Page {
    final_url: Url,
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// The body was longer than `max_bytes`.
    body_truncated: bool,
}

impl WebFetch {
    pub fn new(config: WebFetchConfig) -> Self {
        WebFetch {
            config,
            #[cfg(test)]
            exempt: Vec::new(),
        }
    }

    /// Follows redirects by hand, checking and pinning every hop.
    async fn fetch(&self, start: Url) -> Result<Page, RemoteError> {
        let mut url = start;
        let mut redirects = 0;
        loop {
            let addrs = self.checked_addrs(&url).await?;
            let client = pinned_client(&url, &addrs)?;
            let what = format!("fetching {url}");
            let mut response = client
                .get(url.clone())
                .header(
                    ACCEPT,
                    "text/html,application/xhtml+xml,text/markdown,text/plain;q=0.9,application/json;q=0.9,*/*;q=0.5",
                )
                .send()
                .await
                .map_err(|err| upstream(&what, &err))?;
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok());
            if let (true, Some(location)) = (status.is_redirection(), location) {
                if redirects == self.config.max_redirects {
                    return Err(RemoteError::new(
                        ErrorKind::Upstream,
                        format!(
                            "{url} redirects more than {} times (max_redirects in [web_fetch])",
                            self.config.max_redirects
                        ),
                    ));
                }
                let next = url.join(location).map_err(|err| {
                    RemoteError::new(
                        ErrorKind::Upstream,
                        format!("{url} redirects to {location:?}, which is not a URL: {err}"),
                    )
                })?;
                check_scheme(&next)?;
                redirects += 1;
                url = next;
                continue;
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let (body, body_truncated) =
                read_capped(&mut response, self.config.max_bytes, &what).await?;
            return Ok(Page {
                final_url: url,
                status: status.as_u16(),
                content_type,
                body,
                body_truncated,
            });
        }
    }

    /// The addresses of `url`'s host that may be connected to.
    async fn checked_addrs(&self, url: &Url) -> Result<Vec<SocketAddr>, RemoteError> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| RemoteError::invalid(format!("{url} has no port")))?;
        let (host, addrs): (String, Vec<SocketAddr>) = match url.host() {
            Some(Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
            Some(Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
            Some(Host::Domain(name)) => {
                let addrs = tokio::net::lookup_host((name, port)).await.map_err(|err| {
                    RemoteError::new(
                        ErrorKind::Upstream,
                        format!("could not resolve {name}: {err}"),
                    )
                })?;
                (name.to_string(), addrs.collect())
            }
            None => return Err(RemoteError::invalid(format!("{url} has no host"))),
        };
        if self.config.allow_private {
            return Ok(addrs);
        }
        let refused = addrs
            .iter()
            .find_map(|addr| self.refusal(addr.ip()).map(|why| (addr.ip(), why)));
        let allowed: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|addr| self.refusal(addr.ip()).is_none())
            .collect();
        match (allowed.is_empty(), refused) {
            (true, Some((ip, why))) => {
                let target = if host == ip.to_string() {
                    host
                } else {
                    format!("{host} ({ip})")
                };
                Err(RemoteError::invalid(format!(
                    "refusing to fetch {target}: {why} addresses are not allowed (set allow_private = true in [web_fetch] to permit)"
                )))
            }
            (true, None) => Err(RemoteError::new(
                ErrorKind::Upstream,
                format!("{host} resolved to no address"),
            )),
            (false, _) => Ok(allowed),
        }
    }
}

impl WebFetch {
    fn refusal(&self, ip: std::net::IpAddr) -> Option<&'static str> {
        #[cfg(test)]
        if self.exempt.contains(&ip) {
            return None;
        }
        address_policy::refusal(ip)
    }
}

/// A client that connects only to `addrs` and follows no redirects.
fn pinned_client(url: &Url, addrs: &[SocketAddr]) -> Result<reqwest::Client, RemoteError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(USER_AGENT);
    if let Some(Host::Domain(name)) = url.host() {
        builder = builder.resolve_to_addrs(name, addrs);
    }
    builder
        .build()
        .map_err(|err| RemoteError::internal(format!("building an HTTP client: {err}")))
}

fn check_scheme(url: &Url) -> Result<(), RemoteError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(RemoteError::invalid(format!(
            "web_fetch only fetches http and https URLs, not {other}: ({url})"
        ))),
    }
}

/// How a body becomes text.
#[derive(Debug, PartialEq)]
enum Format {
    Html,
    Text,
}

fn format_of(content_type: &str, body: &[u8]) -> Option<Format> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "text/html" | "application/xhtml+xml" => Some(Format::Html),
        "" => {
            let head = String::from_utf8_lossy(&body[..body.len().min(1024)]).to_ascii_lowercase();
            if head.contains("<html") || head.contains("<!doctype html") {
                Some(Format::Html)
            } else if std::str::from_utf8(&body[..body.len().min(4096)]).is_ok() {
                Some(Format::Text)
            } else {
                None
            }
        }
        m if m.starts_with("text/")
            || m.ends_with("json")
            || m.ends_with("xml")
            || m.ends_with("yaml")
            || m.ends_with("javascript")
            || m.ends_with("toml") =>
        {
            Some(Format::Text)
        }
        _ => None,
    }
}

/// Decodes a body: UTF-8 unless the header names a Latin-1 family charset (the only other one
/// still common on the web), invalid bytes replaced.
fn decode(content_type: &str, body: &[u8]) -> String {
    let charset = content_type
        .split(';')
        .filter_map(|param| param.trim().strip_prefix("charset="))
        .next()
        .map(|c| c.trim_matches('"').to_ascii_lowercase());
    match charset.as_deref() {
        Some("iso-8859-1" | "latin1" | "windows-1252" | "us-ascii") => {
            body.iter().map(|&b| char::from(b)).collect()
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// The page as Markdown. The converter recurses per element level, so the nesting is limited
/// first: a page nested deeper than any real one cannot overflow the converting thread's stack.
fn html_to_markdown(html: &str) -> String {
    let html = super::html_depth::limit_depth(html, super::html_depth::MAX_HTML_DEPTH);
    let converter = htmd::HtmlToMarkdown::builder()
        .skip_tags(SKIPPED_TAGS.to_vec())
        .build();
    // htmd only fails on I/O errors of its in-memory parser; fall back to the raw text.
    converter.convert(&html).unwrap_or(html)
}

#[async_trait]
impl Tool for WebFetch {
    fn info(&self) -> ToolInfo {
        ToolInfo {
            name: NAME.into(),
            description: "Fetch a web page (http or https) and return its content: HTML as Markdown, text and JSON as they are. Long pages come in slices of `limit` characters; when `truncated` is true, call again with `offset` set to offset + the length of `content` to read on.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "The http or https URL to fetch."},
                    "offset": {"type": "integer", "minimum": 0, "description": "First character of the converted text to return (default 0)."},
                    "limit": {"type": "integer", "minimum": 1, "description": format!("Most characters to return (default {DEFAULT_LIMIT}).")}
                },
                "required": ["url"],
                "additionalProperties": false
            }),
            available: true,
        }
    }

    async fn call(&self, input: Value) -> Result<Value, RemoteError> {
        let requested = input::required_str(NAME, &input, "url")?;
        let offset = input::optional_usize(NAME, &input, "offset")?.unwrap_or(0);
        let limit = input::optional_usize(NAME, &input, "limit")?.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 {
            return Err(RemoteError::invalid(
                "web_fetch: `limit` must be at least 1",
            ));
        }
        let url = Url::parse(requested)
            .map_err(|err| RemoteError::invalid(format!("{requested:?} is not a URL: {err}")))?;
        check_scheme(&url)?;

        let deadline = Duration::from_secs(self.config.timeout_secs);
        let page = tokio::time::timeout(deadline, self.fetch(url))
            .await
            .map_err(|_| {
                RemoteError::new(
                    ErrorKind::Timeout,
                    format!(
                        "fetching {requested} took longer than {}s (timeout_secs in [web_fetch])",
                        self.config.timeout_secs
                    ),
                )
            })??;

        let Some(format) = format_of(&page.content_type, &page.body) else {
            return Err(RemoteError::invalid(format!(
                "web_fetch returns text only, and {} is {}",
                page.final_url,
                if page.content_type.is_empty() {
                    "binary"
                } else {
                    &page.content_type
                }
            )));
        };
        let content_type = page.content_type.clone();
        let body = page.body;
        let text = tokio::task::spawn_blocking(move || {
            let text = decode(&content_type, &body);
            match format {
                Format::Html => html_to_markdown(&text),
                Format::Text => text,
            }
        })
        .await
        .map_err(|err| RemoteError::internal(format!("converting the page: {err}")))?;

        let total_chars = text.chars().count();
        let content: String = text.chars().skip(offset).take(limit).collect();
        let end = offset.saturating_add(content.chars().count());
        Ok(json!({
            "url": requested,
            "final_url": page.final_url.as_str(),
            "status": page.status,
            "content_type": page.content_type,
            "content": content,
            "total_chars": total_chars,
            "offset": offset,
            "truncated": end < total_chars,
            "body_truncated": page.body_truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::test_http::{Reply, TestServer};

    const PAGE: &str = "<html><head><title>T</title><style>p{}</style></head><body><h1>Hello</h1><p>Some <b>bold</b> text and a <a href=\"/x\">link</a>.</p><script>alert(1)</script></body></html>";

    fn private_allowed() -> WebFetch {
        WebFetch::new(WebFetchConfig {
            allow_private: true,
            ..WebFetchConfig::default()
        })
    }

    async fn html_server() -> TestServer {
        TestServer::start(|path| match path {
            "/page" => Reply::ok("text/html; charset=utf-8", PAGE),
            "/text" => Reply::ok("text/plain", "0123456789"),
            "/json" => Reply::ok("application/json", r#"{"a": 1}"#),
            "/image" => Reply::ok("image/png", "\u{89}PNG"),
            "/big" => Reply::ok("text/plain", &"x".repeat(10_000)),
            "/hop" => Reply::redirect("/page"),
            "/loop" => Reply::redirect("/loop"),
            _ => Reply::status(404, "not here"),
        })
        .await
    }

    #[test]
    fn deeply_nested_html_converts_without_exhausting_the_stack() {
        // 100 000 unclosed elements: a recursive converter overflows any thread's stack.
        let depth = 100_000;
        let html = format!(
            "<html><body>{}<p>deep text</p>{}<p>after</p></body></html>",
            "<div><span>".repeat(depth / 2),
            "</span></div>".repeat(depth / 2)
        );
        // The size of the blocking pool's threads, where pages are converted.
        let converted = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || html_to_markdown(&html))
            .expect("thread")
            .join()
            .expect("converted without overflowing the stack");
        assert!(
            converted.contains("deep text"),
            "{}",
            &converted[..converted.len().min(200)]
        );
        assert!(converted.contains("after"));
    }

    #[tokio::test]
    async fn html_pages_come_back_as_markdown() {
        let server = html_server().await;
        let url = server.url("/page");
        let out = private_allowed()
            .call(json!({"url": url}))
            .await
            .expect("fetch");
        let content = out["content"].as_str().expect("content");
        assert!(content.contains("# Hello"), "{content}");
        assert!(content.contains("**bold**"), "{content}");
        assert!(content.contains("[link](/x)"), "{content}");
        assert!(!content.contains("alert"), "script text leaked: {content}");
        assert!(!content.contains("p{}"), "style text leaked: {content}");
        assert_eq!(out["status"], 200);
        assert_eq!(out["final_url"], url);
        assert_eq!(out["truncated"], false);
        assert_eq!(out["total_chars"], content.chars().count());
    }

    #[tokio::test]
    async fn text_and_json_come_back_as_they_are_and_binaries_are_refused() {
        let server = html_server().await;
        let tool = private_allowed();
        let json_out = tool
            .call(json!({"url": server.url("/json")}))
            .await
            .expect("json");
        assert_eq!(json_out["content"], r#"{"a": 1}"#);
        let err = tool
            .call(json!({"url": server.url("/image")}))
            .await
            .expect_err("binary");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains("image/png"), "{}", err.message);
        let missing = tool
            .call(json!({"url": server.url("/nope")}))
            .await
            .expect("a 404 is still a page");
        assert_eq!(missing["status"], 404);
        assert_eq!(missing["content"], "not here");
    }

    #[tokio::test]
    async fn loopback_is_refused_by_default() {
        let server = html_server().await;
        let err = WebFetch::new(WebFetchConfig::default())
            .call(json!({"url": server.url("/page")}))
            .await
            .expect_err("must refuse");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert_eq!(
            err.message,
            "refusing to fetch 127.0.0.1: loopback addresses are not allowed (set allow_private = true in [web_fetch] to permit)"
        );
        assert!(server.requests().is_empty(), "the server was contacted");
    }

    #[tokio::test]
    async fn names_are_resolved_and_checked_too() {
        let server = html_server().await;
        let url = server.url("/page").replace("127.0.0.1", "localhost");
        let err = WebFetch::new(WebFetchConfig::default())
            .call(json!({"url": url}))
            .await
            .expect_err("must refuse");
        assert!(
            err.message.starts_with("refusing to fetch localhost ("),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn a_redirect_to_loopback_is_refused() {
        // The redirector stands for a public site: it listens on 127.0.0.2, which this test
        // exempts from the policy; its redirect target, on 127.0.0.1, gets the real policy.
        let target = html_server().await;
        let loopback_url = target.url("/page");
        let redirector =
            TestServer::start_on("127.0.0.2", move |_| Reply::redirect(&loopback_url)).await;
        let mut tool = WebFetch::new(WebFetchConfig::default());
        tool.exempt.push("127.0.0.2".parse().expect("ip"));
        let err = tool
            .call(json!({"url": redirector.url("/start")}))
            .await
            .expect_err("redirect to loopback must be refused");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(
            err.message
                .starts_with("refusing to fetch 127.0.0.1: loopback"),
            "{}",
            err.message
        );
        assert_eq!(redirector.requests().len(), 1, "the first hop was fetched");
        assert!(
            target.requests().is_empty(),
            "the loopback target was contacted"
        );
    }

    #[tokio::test]
    async fn connections_go_to_the_checked_address_not_a_new_lookup() {
        // `pinned.invalid` resolves nowhere (RFC 6761); the request reaches the server only
        // because the client is pinned to the address the policy checked.
        let server = html_server().await;
        let port = Url::parse(&server.url("/"))
            .expect("url")
            .port()
            .expect("port");
        let url = Url::parse(&format!("http://pinned.invalid:{port}/text")).expect("url");
        let checked = [SocketAddr::from(([127, 0, 0, 1], port))];
        let client = pinned_client(&url, &checked).expect("client");
        let response = client.get(url).send().await.expect("pinned request");
        assert_eq!(response.text().await.expect("body"), "0123456789");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn redirects_are_followed_and_limited() {
        let server = html_server().await;
        let tool = private_allowed();
        let out = tool
            .call(json!({"url": server.url("/hop")}))
            .await
            .expect("redirect");
        assert_eq!(out["final_url"], server.url("/page"));
        assert_eq!(out["url"], server.url("/hop"));
        let err = tool
            .call(json!({"url": server.url("/loop")}))
            .await
            .expect_err("loop");
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert!(
            err.message.contains("redirects more than 5 times"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn offset_and_limit_slice_the_text() {
        let server = html_server().await;
        let out = private_allowed()
            .call(json!({"url": server.url("/text"), "offset": 3, "limit": 4}))
            .await
            .expect("fetch");
        assert_eq!(out["content"], "3456");
        assert_eq!(out["total_chars"], 10);
        assert_eq!(out["offset"], 3);
        assert_eq!(out["truncated"], true);
        let tail = private_allowed()
            .call(json!({"url": server.url("/text"), "offset": 8}))
            .await
            .expect("fetch");
        assert_eq!(tail["content"], "89");
        assert_eq!(tail["truncated"], false);
    }

    #[tokio::test]
    async fn bodies_past_max_bytes_are_not_read() {
        let server = html_server().await;
        let tool = WebFetch::new(WebFetchConfig {
            allow_private: true,
            max_bytes: 1000,
            ..WebFetchConfig::default()
        });
        let out = tool
            .call(json!({"url": server.url("/big")}))
            .await
            .expect("fetch");
        assert_eq!(out["total_chars"], 1000);
        assert_eq!(out["body_truncated"], true);
    }

    #[tokio::test]
    async fn bad_input_is_an_invalid_request() {
        let tool = private_allowed();
        for (input, expected) in [
            (json!({}), "needs `url`"),
            (
                json!({"url": "file:///etc/passwd"}),
                "only fetches http and https",
            ),
            (json!({"url": "not a url"}), "is not a URL"),
            (
                json!({"url": "http://x", "limit": "a"}),
                "`limit` must be a non-negative integer",
            ),
        ] {
            let err = tool.call(input).await.expect_err("must fail");
            assert_eq!(err.kind, ErrorKind::InvalidRequest);
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }
}
