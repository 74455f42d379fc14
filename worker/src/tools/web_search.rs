//! `web_search`: asks a search service and returns titles, URLs and snippets.
//!
//! Two backends: SearxNG (self-hosted, no key, its JSON API must be enabled in its settings) and
//! the Brave Search API (a subscription token). Both answer the same shape, `{query, results:
//! [{title, url, snippet}]}`, so a model never sees which one ran. Without a backend the tool is
//! still listed, as unavailable, and a call says which setting to fill in.
//!
//! The backend URL is the operator's, not the model's, so it is not subject to `web_fetch`'s
//! address policy (a SearxNG on the private network is the usual setup).

use std::time::Duration;

use async_trait::async_trait;
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::ToolInfo;
use reqwest::header::ACCEPT;
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use anyhow::Context as _;

use super::http::{excerpt, read_capped, upstream, USER_AGENT};
use super::input;
use super::runner::Tool;

const NAME: &str = "web_search";

const BRAVE_DEFAULT_BASE: &str = "https://api.search.brave.com";

/// Largest search response read; real ones are tens of kilobytes.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Which search service `web_search` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackend {
    Searxng,
    Brave,
}

/// `[web_search]` in the tools configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSearchConfig {
    /// Absent: the tool is listed as unavailable.
    pub backend: Option<SearchBackend>,
    /// SearxNG base URL (required for SearxNG); for Brave, overrides the API base URL.
    pub url: Option<String>,
    /// Brave subscription token; `BRAVE_API_KEY` is used when this is absent.
    pub api_key: Option<String>,
    /// Results returned by default, and the most a caller may ask for.
    #[serde(default = "default_max_results")]
    pub max_results: usize,
}

/// The most results a caller can get, whatever the configuration: Brave's own cap.
pub const MAX_RESULTS_CAP: usize = 20;

fn default_max_results() -> usize {
    5
}

impl Default for WebSearchConfig {
    fn default() -> Self {
        WebSearchConfig {
            backend: None,
            url: None,
            api_key: None,
            max_results: default_max_results(),
        }
    }
}

impl WebSearchConfig {
    /// Checks what serde cannot: values in range and a URL where the backend needs one.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(1..=MAX_RESULTS_CAP).contains(&self.max_results) {
            anyhow::bail!("[web_search] max_results must be between 1 and {MAX_RESULTS_CAP}");
        }
        if self.backend == Some(SearchBackend::Searxng) && self.url.is_none() {
            anyhow::bail!("[web_search] backend = \"searxng\" needs url, the SearxNG base URL (for example url = \"http://searxng:8888\")");
        }
        if let Some(url) = &self.url {
            Url::parse(url).with_context(|| format!("[web_search] url {url:?} is not a URL"))?;
        }
        Ok(())
    }
}

pub struct WebSearch {
    /// The backend, or what to set to get one.
    backend: Result<Backend, String>,
    max_results: usize,
    client: reqwest::Client,
}

enum Backend {
    Searxng { endpoint: Url },
    Brave { endpoint: Url, api_key: String },
}

/// One result as returned to the caller.
#[derive(Debug, PartialEq)]
struct Hit {
    title: String,
    url: String,
    snippet: String,
}

impl WebSearch {
    /// `env_api_key` is `BRAVE_API_KEY`, read by the caller so tests need not touch the
    /// process environment.
    pub fn new(config: &WebSearchConfig, env_api_key: Option<String>) -> anyhow::Result<Self> {
        let backend = match config.backend {
            None => Err("web_search is not configured: set [web_search] backend and url (SearxNG) or api_key (Brave) in the tools config".to_string()),
            Some(SearchBackend::Searxng) => {
                let base = config.url.as_deref().unwrap_or_default();
                Ok(Backend::Searxng {
                    endpoint: endpoint(base, "search")?,
                })
            }
            Some(SearchBackend::Brave) => {
                let key = config
                    .api_key
                    .clone()
                    .or(env_api_key)
                    .filter(|k| !k.trim().is_empty());
                match key {
                    None => {
                        tracing::warn!("web_search uses Brave but has no API key; it is listed as unavailable");
                        Err("web_search is not configured: set api_key in [web_search] or the BRAVE_API_KEY environment variable of the worker".to_string())
                    }
                    Some(api_key) => Ok(Backend::Brave {
                        endpoint: endpoint(
                            config.url.as_deref().unwrap_or(BRAVE_DEFAULT_BASE),
                            "res/v1/web/search",
                        )?,
                        api_key,
                    }),
                }
            }
        };
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(WebSearch {
            backend,
            max_results: config.max_results,
            client,
        })
    }

    async fn search(
        &self,
        backend: &Backend,
        query: &str,
        count: usize,
    ) -> Result<Vec<Hit>, RemoteError> {
        let (request, service) = match backend {
            Backend::Searxng { endpoint } => (
                self.client
                    .get(with_query(endpoint, &[("q", query), ("format", "json")])),
                format!("SearxNG at {endpoint}"),
            ),
            Backend::Brave { endpoint, api_key } => (
                self.client
                    .get(with_query(
                        endpoint,
                        &[("q", query), ("count", &count.to_string())],
                    ))
                    .header("X-Subscription-Token", api_key),
                "the Brave Search API".to_string(),
            ),
        };
        let what = format!("asking {service}");
        let mut response = request
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| upstream(&what, &err))?;
        let status = response.status();
        let (body, _) = read_capped(&mut response, MAX_RESPONSE_BYTES, &what).await?;
        if !status.is_success() {
            let hint = match (backend, status.as_u16()) {
                (Backend::Searxng { .. }, 403) => " (enable the JSON format in SearxNG's settings.yml: search.formats: [html, json])",
                (Backend::Brave { .. }, 401 | 403 | 422) => " (check api_key in [web_search] or BRAVE_API_KEY)",
                (_, 429) => " (rate limited; try again later)",
                _ => "",
            };
            return Err(RemoteError::new(
                ErrorKind::Upstream,
                format!("{service} answered {status}{hint}: {}", excerpt(&body, 300)),
            ));
        }
        let hits = match backend {
            Backend::Searxng { .. } => parse_searxng(&body),
            Backend::Brave { .. } => parse_brave(&body),
        }
        .map_err(|err| {
            RemoteError::new(
                ErrorKind::Upstream,
                format!("{service} answered something other than its search JSON: {err}"),
            )
        })?;
        Ok(hits.into_iter().take(count).collect())
    }
}

/// `base` + `/path`, keeping any path `base` already has (SearxNG is often served under one).
fn endpoint(base: &str, path: &str) -> anyhow::Result<Url> {
    let url = format!("{}/{path}", base.trim_end_matches('/'));
    Ok(Url::parse(&url)?)
}

fn with_query(endpoint: &Url, pairs: &[(&str, &str)]) -> Url {
    let mut url = endpoint.clone();
    url.query_pairs_mut().extend_pairs(pairs);
    url
}

fn parse_searxng(body: &[u8]) -> Result<Vec<Hit>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Response {
        #[serde(default)]
        results: Vec<Result>,
    }
    #[derive(Deserialize)]
    struct Result {
        #[serde(default)]
        title: String,
        #[serde(default)]
        url: String,
        #[serde(default)]
        content: String,
    }
    let response: Response = serde_json::from_slice(body)?;
    Ok(response
        .results
        .into_iter()
        .filter(|r| !r.url.is_empty())
        .map(|r| Hit {
            title: r.title,
            url: r.url,
            snippet: r.content,
        })
        .collect())
}

fn parse_brave(body: &[u8]) -> Result<Vec<Hit>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Response {
        web: Option<Web>,
    }
    #[derive(Deserialize)]
    struct Web {
        #[serde(default)]
        results: Vec<Result>,
    }
    #[derive(Deserialize)]
    struct Result {
        #[serde(default)]
        title: String,
        #[serde(default)]
        url: String,
        #[serde(default)]
        description: String,
    }
    let response: Response = serde_json::from_slice(body)?;
    Ok(response
        .web
        .map(|web| web.results)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| !r.url.is_empty())
        .map(|r| Hit {
            title: plain(&r.title),
            url: r.url,
            snippet: plain(&r.description),
        })
        .collect())
}

/// Brave marks matches with `<strong>` and escapes entities; Markdown reads better to a model.
fn plain(html: &str) -> String {
    htmd::convert(html)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| html.to_string())
}

#[async_trait]
impl Tool for WebSearch {
    fn info(&self) -> ToolInfo {
        ToolInfo {
            name: NAME.into(),
            description: format!("Search the web. Returns up to {} results, each with a title, a URL and a snippet; use web_fetch to read a result.", self.max_results),
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to search for."},
                    "count": {"type": "integer", "minimum": 1, "maximum": self.max_results, "description": format!("Number of results (default and most: {}).", self.max_results)}
                },
                "required": ["query"],
                "additionalProperties": false
            }),
            available: self.backend.is_ok(),
        }
    }

    async fn call(&self, input: Value) -> Result<Value, RemoteError> {
        let backend = self
            .backend
            .as_ref()
            .map_err(|missing| RemoteError::new(ErrorKind::Unavailable, missing.clone()))?;
        let query = input::required_str(NAME, &input, "query")?;
        let count = input::optional_usize(NAME, &input, "count")?
            .unwrap_or(self.max_results)
            .clamp(1, self.max_results);
        let hits = self.search(backend, query, count).await?;
        let results: Vec<Value> = hits
            .into_iter()
            .map(|hit| json!({"title": hit.title, "url": hit.url, "snippet": hit.snippet}))
            .collect();
        Ok(json!({"query": query, "results": results}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::test_http::{Reply, TestServer};

    const SEARXNG_ANSWER: &str = r#"{"query": "rust", "results": [
        {"title": "Rust", "url": "https://www.rust-lang.org/", "content": "A language empowering everyone.", "engine": "x"},
        {"title": "Rust (video game)", "url": "https://rust.facepunch.com/", "content": "Survive."},
        {"title": "no url"},
        {"title": "Third", "url": "https://example.org/3", "content": "three"}
    ]}"#;

    const BRAVE_ANSWER: &str = r#"{"type": "search", "web": {"results": [
        {"title": "The <strong>Rust</strong> Book", "url": "https://doc.rust-lang.org/book/", "description": "Learn <strong>Rust</strong> &amp; more."}
    ]}}"#;

    fn config(backend: SearchBackend, url: &str) -> WebSearchConfig {
        WebSearchConfig {
            backend: Some(backend),
            url: Some(url.into()),
            api_key: None,
            max_results: 2,
        }
    }

    #[tokio::test]
    async fn searxng_results_are_returned_in_the_common_shape() {
        let server = TestServer::start(|_| Reply::ok("application/json", SEARXNG_ANSWER)).await;
        let tool = WebSearch::new(
            &config(SearchBackend::Searxng, &server.url("/searx/")),
            None,
        )
        .expect("tool");
        assert!(tool.info().available);
        let out = tool
            .call(json!({"query": "rust lang"}))
            .await
            .expect("search");
        assert_eq!(
            out,
            json!({"query": "rust lang", "results": [
                {"title": "Rust", "url": "https://www.rust-lang.org/", "snippet": "A language empowering everyone."},
                {"title": "Rust (video game)", "url": "https://rust.facepunch.com/", "snippet": "Survive."}
            ]})
        );
        let one = tool
            .call(json!({"query": "rust", "count": 1}))
            .await
            .expect("search");
        assert_eq!(one["results"].as_array().map(Vec::len), Some(1));
        let target = &server.requests()[0].target;
        assert_eq!(target, "/searx/search?q=rust+lang&format=json");
    }

    #[tokio::test]
    async fn brave_is_asked_with_the_token_and_its_markup_removed() {
        let server = TestServer::start(|path| match path {
            "/res/v1/web/search" => Reply::ok("application/json", BRAVE_ANSWER),
            _ => Reply::status(404, "wrong path"),
        })
        .await;
        let mut cfg = config(SearchBackend::Brave, &server.url(""));
        cfg.api_key = Some("secret-token".into());
        let tool = WebSearch::new(&cfg, None).expect("tool");
        let out = tool.call(json!({"query": "rust"})).await.expect("search");
        assert_eq!(
            out["results"],
            json!([{"title": "The **Rust** Book", "url": "https://doc.rust-lang.org/book/", "snippet": "Learn **Rust** & more."}])
        );
        let request = &server.requests()[0];
        assert_eq!(request.target, "/res/v1/web/search?q=rust&count=2");
        assert!(
            request.head.contains("x-subscription-token: secret-token"),
            "{}",
            request.head
        );
    }

    #[tokio::test]
    async fn backend_failures_are_upstream_errors_with_a_hint() {
        let server = TestServer::start(|_| Reply::status(403, "Forbidden")).await;
        let tool =
            WebSearch::new(&config(SearchBackend::Searxng, &server.url("")), None).expect("tool");
        let err = tool.call(json!({"query": "x"})).await.expect_err("403");
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert!(err.message.contains("403 Forbidden"), "{}", err.message);
        assert!(err.message.contains("search.formats"), "{}", err.message);
    }

    #[tokio::test]
    async fn unconfigured_search_is_listed_unavailable_and_says_what_to_set() {
        let tool = WebSearch::new(&WebSearchConfig::default(), None).expect("tool");
        assert!(!tool.info().available);
        let err = tool
            .call(json!({"query": "x"}))
            .await
            .expect_err("unavailable");
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            "web_search is not configured: set [web_search] backend and url (SearxNG) or api_key (Brave) in the tools config"
        );

        let brave_without_key = WebSearchConfig {
            backend: Some(SearchBackend::Brave),
            ..WebSearchConfig::default()
        };
        let tool = WebSearch::new(&brave_without_key, None).expect("tool");
        assert!(!tool.info().available);
        let err = tool.call(json!({"query": "x"})).await.expect_err("no key");
        assert!(err.message.contains("BRAVE_API_KEY"), "{}", err.message);
        let from_env = WebSearch::new(&brave_without_key, Some("k".into())).expect("tool");
        assert!(from_env.info().available);
    }

    #[tokio::test]
    async fn a_missing_query_is_an_invalid_request() {
        let tool = WebSearch::new(&config(SearchBackend::Searxng, "http://127.0.0.1:9"), None)
            .expect("tool");
        let err = tool.call(json!({"count": 3})).await.expect_err("no query");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains("needs `query`"), "{}", err.message);
    }
}
