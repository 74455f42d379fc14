//! `[[mcp]]` tools: the tools of MCP servers, spoken to with the official Rust SDK (`rmcp`):
//! started as child processes and spoken to over stdio (`command = ...`), or reached over the
//! streamable HTTP transport (`url = ...`, with an optional bearer token).
//!
//! Each server is started (or connected to) once, at load, and kept for the worker's lifetime:
//! MCP servers are
//! often slow to start (`npx` downloads) and some keep state between calls, so a process per call
//! (as `[[command]]` does) would be slow and wrong. Its tools are advertised under the names the
//! server gives them; names a model API would reject are skipped with a warning rather than
//! failing the worker. Dropping the last tool of a server closes the session and kills the
//! process.
//!
//! A result is returned as the server's structured content when it gives one, otherwise as its
//! text parts joined. A result flagged `isError` is the tool failing, reported as Upstream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::ToolInfo;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    ErrorCode, Implementation, ResourceContents,
};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceError, ServiceExt as _};
use serde::Deserialize;
use serde_json::Value;

use super::input;
use super::process_env::child_env;
use super::runner::{check_tool_name, Tool};

/// One `[[mcp]]` in the tools configuration file: an MCP server started as a child process and
/// spoken to over stdio (`command`), or one reached over streamable HTTP (`url`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// A label for logs and errors; the tools keep the names the server gives them.
    pub name: String,
    /// The program that is the server (stdio).
    #[serde(default)]
    pub command: String,
    /// The server's streamable-HTTP endpoint, instead of `command`.
    #[serde(default)]
    pub url: Option<String>,
    /// The name of an environment variable of the worker holding a bearer token for `url`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables set for the server.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the worker's own environment variables passed through.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Time to start, initialize and list tools (first runs of `npx` download packages).
    #[serde(default = "default_startup_timeout_secs")]
    pub startup_timeout_secs: u64,
}

fn default_startup_timeout_secs() -> u64 {
    60
}

impl McpConfig {
    /// Checks what serde cannot: a label, and either a command or an http(s) URL.
    pub fn check(&self) -> anyhow::Result<()> {
        let has_command = !self.command.trim().is_empty();
        if self.name.trim().is_empty() || has_command == self.url.is_some() {
            anyhow::bail!(
                "every [[mcp]] needs a name (a label) and either a command (stdio) or a url (streamable HTTP)"
            );
        }
        if let Some(url) = &self.url {
            let parsed = url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("[[mcp]] `{}`: url {url}: {e}", self.name))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("[[mcp]] `{}`: url must be http or https", self.name);
            }
        } else if self.bearer_token_env.is_some() {
            anyhow::bail!(
                "[[mcp]] `{}`: bearer_token_env goes with url, not command",
                self.name
            );
        }
        Ok(())
    }

    /// What the server is, for messages: its command or its URL.
    fn target(&self) -> &str {
        self.url.as_deref().unwrap_or(&self.command)
    }
}

/// One running MCP server.
struct McpServer {
    /// The `name` of its `[[mcp]]` entry, for messages.
    label: String,
    session: RunningService<RoleClient, ClientConfig>,
}

/// One tool of an MCP server.
pub struct McpTool {
    server: Arc<McpServer>,
    info: ToolInfo,
}

/// Connects to the server of a `url` entry over streamable HTTP.
async fn connect_http(
    config: &McpConfig,
    url: &str,
    client: ClientConfig,
) -> anyhow::Result<RunningService<RoleClient, ClientConfig>> {
    let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(variable) = &config.bearer_token_env {
        let token = std::env::var(variable).with_context(|| {
            format!(
                "[[mcp]] `{}`: bearer_token_env names `{variable}`, which is not set",
                config.name
            )
        })?;
        transport_config = transport_config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(transport_config);
    client
        .serve(transport)
        .await
        .context("the MCP handshake failed")
}

/// Starts the server of a `command` entry and connects to it over stdio.
async fn connect_stdio(
    config: &McpConfig,
    client: ClientConfig,
) -> anyhow::Result<RunningService<RoleClient, ClientConfig>> {
    let mut command = tokio::process::Command::new(&config.command);
    command
        .args(&config.args)
        .env_clear()
        .envs(child_env(&config.env, &config.pass_env));
    let transport = TokioChildProcess::new(command).with_context(|| {
        format!(
            "[[mcp]] `{}`: could not start `{}` (is it installed and on PATH?)",
            config.name, config.command
        )
    })?;
    client
        .serve(transport)
        .await
        .context("the MCP handshake failed")
}

/// Starts (or connects to) the server of one `[[mcp]]` entry and lists its tools.
pub async fn start(config: &McpConfig) -> anyhow::Result<Vec<McpTool>> {
    let label = &config.name;
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("auxot-worker", env!("CARGO_PKG_VERSION")),
    );
    let startup = async {
        let session = match &config.url {
            Some(url) => connect_http(config, url, client).await?,
            None => connect_stdio(config, client).await?,
        };
        let tools = session
            .list_all_tools()
            .await
            .context("listing its tools failed")?;
        anyhow::Ok((session, tools))
    };
    let timeout = Duration::from_secs(config.startup_timeout_secs);
    let (session, listed) = tokio::time::timeout(timeout, startup)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "did not answer within {}s (startup_timeout_secs)",
                config.startup_timeout_secs
            )
        })
        .and_then(|started| started)
        .with_context(|| format!("[[mcp]] `{label}` (`{}`)", config.target()))?;

    let server = Arc::new(McpServer {
        label: label.clone(),
        session,
    });
    let mut tools = Vec::new();
    for tool in listed {
        if let Err(err) = check_tool_name(&tool.name) {
            tracing::warn!(server = %label, "skipping an MCP tool: {err:#}");
            continue;
        }
        let description = tool
            .description
            .map(|d| d.to_string())
            .or(tool.title)
            .unwrap_or_default();
        tools.push(McpTool {
            server: server.clone(),
            info: ToolInfo {
                name: tool.name.to_string(),
                description,
                parameters: Value::Object((*tool.input_schema).clone()),
                available: true,
            },
        });
    }
    tracing::info!(server = %label, tools = tools.len(), "mcp server started");
    Ok(tools)
}

impl McpTool {
    fn failed(&self, err: ServiceError) -> RemoteError {
        let (tool, label) = (&self.info.name, &self.server.label);
        match err {
            ServiceError::McpError(data) if data.code == ErrorCode::INVALID_PARAMS => {
                RemoteError::invalid(format!(
                    "MCP server `{label}` rejected the input of `{tool}`: {}",
                    data.message
                ))
            }
            ServiceError::McpError(data) => RemoteError::new(
                ErrorKind::Upstream,
                format!(
                    "MCP server `{label}` answered `{tool}` with an error ({}): {}",
                    data.code.0, data.message
                ),
            ),
            ServiceError::Timeout { timeout } => RemoteError::new(
                ErrorKind::Timeout,
                format!("MCP server `{label}` did not answer `{tool}` within {timeout:?}"),
            ),
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => RemoteError::new(
                ErrorKind::Upstream,
                format!("MCP server `{label}` is not reachable any more (it exited, closed its stdout or its HTTP session ended); restart the worker"),
            ),
            other => RemoteError::new(
                ErrorKind::Upstream,
                format!("MCP server `{label}` failed on `{tool}`: {other}"),
            ),
        }
    }
}

/// The text of a result's content, parts joined by newlines; non-text parts are named.
fn text_of(content: &[ContentBlock]) -> String {
    let parts: Vec<String> = content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                _ => "[binary resource omitted]".into(),
            },
            ContentBlock::Image(_) => "[image omitted]".into(),
            ContentBlock::Audio(_) => "[audio omitted]".into(),
            _ => "[content omitted]".into(),
        })
        .collect();
    parts.join("\n")
}

fn into_value(result: CallToolResult) -> Value {
    match result.structured_content {
        Some(structured) => structured,
        None => Value::String(text_of(&result.content)),
    }
}

#[async_trait]
impl Tool for McpTool {
    fn info(&self) -> ToolInfo {
        ToolInfo {
            available: !self.server.session.is_closed(),
            ..self.info.clone()
        }
    }

    async fn call(&self, input: Value) -> Result<Value, RemoteError> {
        let name = &self.info.name;
        let arguments = input::object(name, &input)?.clone();
        input::check_required(name, &self.info.parameters, &input)?;
        let params = CallToolRequestParams::new(name.clone()).with_arguments(arguments);
        let result = self
            .server
            .session
            .call_tool(params)
            .await
            .map_err(|err| self.failed(err))?;
        if result.is_error == Some(true) {
            return Err(RemoteError::new(
                ErrorKind::Upstream,
                format!(
                    "MCP tool `{name}` (server `{}`) failed: {}",
                    self.server.label,
                    text_of(&result.content)
                ),
            ));
        }
        Ok(into_value(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    /// The test MCP server, built by the tests crate into the same profile directory.
    fn test_server_binary() -> PathBuf {
        let dir = match std::env::var("AUXOT_BIN_DIR") {
            Ok(dir) => PathBuf::from(dir),
            Err(_) => std::env::current_exe()
                .expect("test executable path")
                .parent()
                .and_then(Path::parent)
                .expect("test binary lives in <target>/<profile>/deps")
                .to_path_buf(),
        };
        let path = dir.join("auxot-test-mcp");
        assert!(
            path.exists(),
            "{} is missing: build with `cargo build --release --workspace --all-targets`",
            path.display()
        );
        path
    }

    fn config(command: &str) -> McpConfig {
        McpConfig {
            name: "test".into(),
            command: command.into(),
            url: None,
            bearer_token_env: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            pass_env: Vec::new(),
            startup_timeout_secs: 20,
        }
    }

    async fn started() -> Vec<McpTool> {
        let binary = test_server_binary();
        start(&config(&binary.to_string_lossy()))
            .await
            .expect("the test MCP server starts")
    }

    fn tool<'a>(tools: &'a [McpTool], name: &str) -> &'a McpTool {
        tools
            .iter()
            .find(|t| t.info.name == name)
            .unwrap_or_else(|| panic!("tool {name} advertised"))
    }

    #[tokio::test]
    async fn the_servers_tools_are_advertised_with_their_schemas() {
        let tools = started().await;
        let mut names: Vec<_> = tools.iter().map(|t| t.info().name).collect();
        names.sort();
        assert_eq!(names, ["add", "echo", "fail"]);
        let echo = tool(&tools, "echo").info();
        assert!(echo.available);
        assert_eq!(echo.description, "Returns its text argument.");
        assert_eq!(echo.parameters["required"], json!(["text"]));
        assert_eq!(echo.parameters["properties"]["text"]["type"], "string");
    }

    #[tokio::test]
    async fn calls_return_text_or_structured_content() {
        let tools = started().await;
        let echoed = tool(&tools, "echo")
            .call(json!({"text": "hello mcp"}))
            .await
            .expect("echo");
        assert_eq!(echoed, json!("hello mcp"));
        let sum = tool(&tools, "add")
            .call(json!({"a": 2, "b": 40.5}))
            .await
            .expect("add");
        assert_eq!(sum, json!({"sum": 42.5}));
    }

    #[tokio::test]
    async fn tool_errors_and_bad_input_are_reported_by_kind() {
        let tools = started().await;
        let err = tool(&tools, "fail")
            .call(json!({}))
            .await
            .expect_err("fail fails");
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert_eq!(
            err.message,
            "MCP tool `fail` (server `test`) failed: this tool always fails"
        );
        let err = tool(&tools, "add")
            .call(json!({"a": 1}))
            .await
            .expect_err("b missing");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(
            err.message.contains("missing required field(s): b"),
            "{}",
            err.message
        );
        let err = tool(&tools, "add")
            .call(json!({"a": 1, "b": "two"}))
            .await
            .expect_err("b not a number");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(
            err.message.contains("rejected the input of `add`"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn a_server_that_cannot_start_fails_the_load_with_its_name() {
        let err = start(&config("/nonexistent/mcp-server"))
            .await
            .err()
            .expect("must fail");
        let message = format!("{err:#}");
        assert!(
            message.contains("[[mcp]] `test`: could not start `/nonexistent/mcp-server`"),
            "{message}"
        );
        let err = start(&config("true")).await.err().expect("must fail");
        let message = format!("{err:#}");
        assert!(message.contains("[[mcp]] `test` (`true`)"), "{message}");
    }
}
