//! The tools configuration file (TOML) of a tools worker: the file assembled from the sections
//! each tool defines for itself, the checks that span sections, and building the [`ToolRunner`]
//! it describes.
//!
//! Every section rejects unknown fields, so a misspelt setting stops the worker at start with the
//! line it is on instead of being silently ignored. `web_search` and `web_fetch` are built in and
//! always listed; an unconfigured `web_search` is listed as unavailable, so a router can tell a
//! user which setting is missing rather than claiming the tool does not exist. MCP servers are
//! started here, at load, because their tool lists are only known once they answer.
//!
//! ```toml
//! [limits]
//! timeout_secs = 30
//! max_output_bytes = 1048576
//!
//! [web_search]
//! backend = "searxng"            # or "brave"
//! url = "http://searxng:8888"    # SearxNG base URL; for Brave, an optional API base override
//! # api_key = "..."              # Brave; or the BRAVE_API_KEY environment variable
//! max_results = 5
//!
//! [web_fetch]
//! allow_private = false
//! max_bytes = 2097152
//! timeout_secs = 20
//! max_redirects = 5
//!
//! [[command]]
//! name = "word_count"
//! description = "Counts the words of a text."
//! parameters = { type = "object", properties = { text = { type = "string" } }, required = ["text"] }
//! program = "python3"
//! args = ["/opt/tools/word_count.py"]
//! timeout_secs = 10
//! env = { LANG = "C.UTF-8" }
//! pass_env = ["SOME_TOKEN"]
//!
//! [[mcp]]
//! name = "filesystem"
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"]
//! env = {}
//! pass_env = []
//! startup_timeout_secs = 60
//!
//! [[mcp]]                        # over streamable HTTP instead of stdio
//! name = "remote"
//! url = "https://mcp.example.com/mcp"
//! bearer_token_env = "REMOTE_MCP_TOKEN"
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use super::command::{CommandConfig, CommandTool};
use super::mcp::{self, McpConfig};
use super::runner::{CallLimits, Tool, ToolRunner};
use super::web_fetch::{WebFetch, WebFetchConfig};
use super::web_search::{WebSearch, WebSearchConfig};

/// The whole file; each section's type belongs to the tool it configures.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsConfig {
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub web_search: WebSearchConfig,
    #[serde(default)]
    pub web_fetch: WebFetchConfig,
    /// `[[command]]` entries: local programs exposed as tools.
    #[serde(default, rename = "command")]
    pub commands: Vec<CommandConfig>,
    /// `[[mcp]]` entries: MCP servers (stdio or streamable HTTP) whose tools are exposed.
    #[serde(default, rename = "mcp")]
    pub mcp_servers: Vec<McpConfig>,
}

/// Limits applied to every call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
    /// Calls run at once on this worker.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Calls that may wait for a free slot; more are refused as overloaded (429).
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
}

fn default_max_concurrent() -> usize {
    CallLimits::default().max_concurrent
}

fn default_max_queued() -> usize {
    CallLimits::default().max_queued
}

fn default_timeout_secs() -> u64 {
    CallLimits::default().timeout.as_secs()
}

fn default_max_output_bytes() -> usize {
    CallLimits::default().max_output_bytes
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            timeout_secs: default_timeout_secs(),
            max_output_bytes: default_max_output_bytes(),
            max_concurrent: default_max_concurrent(),
            max_queued: default_max_queued(),
        }
    }
}

/// Reads the file and builds the tools it describes, starting its MCP servers.
pub async fn load(path: &Path) -> anyhow::Result<ToolRunner> {
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    build(parse(&text)?).await
}

/// Parses and checks the file's text.
pub fn parse(text: &str) -> anyhow::Result<ToolsConfig> {
    let config: ToolsConfig = toml::from_str(text)?;
    config.check()?;
    Ok(config)
}

impl ToolsConfig {
    /// Checks what serde cannot, section by section, then what spans sections (unique names).
    fn check(&self) -> anyhow::Result<()> {
        if self.limits.timeout_secs == 0
            || self.limits.max_output_bytes == 0
            || self.limits.max_concurrent == 0
        {
            bail!(
                "[limits] timeout_secs, max_output_bytes and max_concurrent must be greater than 0"
            );
        }
        self.web_search.check()?;
        self.web_fetch.check()?;
        for command in &self.commands {
            command.check()?;
        }
        for server in &self.mcp_servers {
            server.check()?;
        }
        let labels = self.mcp_servers.iter().map(|server| &server.name);
        if let Some(label) = first_duplicate(labels) {
            bail!("two [[mcp]] entries are named `{label}`; give each a different name");
        }
        Ok(())
    }
}

fn first_duplicate<'a>(names: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().find(|name| !seen.insert(*name))
}

/// Builds the tools: the built-ins, the commands, then each MCP server's tools.
pub async fn build(config: ToolsConfig) -> anyhow::Result<ToolRunner> {
    let limits = CallLimits {
        timeout: Duration::from_secs(config.limits.timeout_secs),
        max_output_bytes: config.limits.max_output_bytes,
        max_concurrent: config.limits.max_concurrent,
        max_queued: config.limits.max_queued,
    };
    // Where each tool came from, to name both sides of a clash.
    let mut tools: Vec<(String, Arc<dyn Tool>)> = vec![
        (
            "the built-in tools".into(),
            Arc::new(WebSearch::new(
                &config.web_search,
                std::env::var("BRAVE_API_KEY").ok(),
            )?),
        ),
        (
            "the built-in tools".into(),
            Arc::new(WebFetch::new(config.web_fetch.clone())),
        ),
    ];
    for command in &config.commands {
        let tool = CommandTool::new(command, limits.max_output_bytes);
        tools.push(("[[command]]".into(), Arc::new(tool)));
    }
    let started = futures::future::try_join_all(config.mcp_servers.iter().map(mcp::start)).await?;
    for (server, server_tools) in config.mcp_servers.iter().zip(started) {
        for tool in server_tools {
            tools.push((format!("[[mcp]] `{}`", server.name), Arc::new(tool)));
        }
    }

    let mut sources: HashMap<String, &str> = HashMap::new();
    for (source, tool) in &tools {
        let name = tool.info().name;
        if let Some(first) = sources.insert(name.clone(), source) {
            bail!("tool `{name}` is defined twice, by {first} and by {source}; tool names must be unique (rename the [[command]], or drop one of the MCP servers)");
        }
    }
    Ok(ToolRunner::new(
        tools.into_iter().map(|(_, tool)| tool).collect(),
        limits,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::web_search::SearchBackend;

    fn parse_err(text: &str) -> String {
        format!("{:#}", parse(text).expect_err("config must be refused"))
    }

    #[test]
    fn a_full_file_parses() {
        let config = parse(
            r#"
            [limits]
            timeout_secs = 10
            [web_search]
            backend = "brave"
            api_key = "k"
            max_results = 3
            [web_fetch]
            allow_private = true
            max_bytes = 1000
            [[command]]
            name = "echo"
            description = "Echoes."
            parameters = { type = "object", properties = { text = { type = "string" } }, required = ["text"] }
            program = "sh"
            args = ["-c", "cat"]
            env = { A = "1" }
            [[mcp]]
            name = "fs"
            command = "mcp-fs"
            args = ["/tmp"]
            "#,
        )
        .expect("valid config");
        assert_eq!(config.limits.timeout_secs, 10);
        assert_eq!(config.web_search.backend, Some(SearchBackend::Brave));
        assert_eq!(config.web_search.max_results, 3);
        assert!(config.web_fetch.allow_private);
        assert_eq!(config.web_fetch.max_redirects, 5);
        assert_eq!(config.commands[0].parameters["required"][0], "text");
        assert_eq!(config.commands[0].env["A"], "1");
        assert_eq!(config.mcp_servers[0].args, ["/tmp"]);
        assert_eq!(config.mcp_servers[0].startup_timeout_secs, 60);
    }

    #[test]
    fn mistakes_are_refused_with_messages_that_say_what_to_fix() {
        let cases = [
            ("[web_fetch]\nallow_privat = true", "unknown field `allow_privat`"),
            ("[web_search]\nbackend = \"google\"", "unknown variant `google`"),
            ("[web_search]\nbackend = \"searxng\"", "needs url"),
            ("[web_search]\nmax_results = 0", "max_results must be between 1 and 20"),
            ("[tools]\nx = 1", "unknown field `tools`"),
            (
                "[[command]]\nname = \"bad name\"\ndescription = \"d\"\nprogram = \"p\"",
                "must be 1 to 64 letters",
            ),
            (
                "[[command]]\nname = \"x\"\ndescription = \"d\"\nprogram = \"p\"\nparameters = { type = \"string\" }",
                "parameters must be a JSON Schema for an object",
            ),
            (
                "[[command]]\nname = \"x\"\nprogram = \"p\"",
                "missing field `description`",
            ),
            (
                "[[mcp]]\nname = \"a\"\ncommand = \"x\"\n[[mcp]]\nname = \"a\"\ncommand = \"y\"",
                "two [[mcp]] entries are named `a`",
            ),
            (
                "[[mcp]]\nname = \"a\"\ncommand = \"x\"\nurl = \"http://h/mcp\"",
                "either a command (stdio) or a url",
            ),
            ("[[mcp]]\nname = \"a\"", "either a command (stdio) or a url"),
            (
                "[[mcp]]\nname = \"a\"\nurl = \"ftp://h/mcp\"",
                "url must be http or https",
            ),
            (
                "[[mcp]]\nname = \"a\"\ncommand = \"x\"\nbearer_token_env = \"T\"",
                "bearer_token_env goes with url",
            ),
        ];
        for (text, expected) in cases {
            let message = parse_err(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[tokio::test]
    async fn a_command_named_like_a_built_in_is_refused_at_load() {
        let config =
            parse("[[command]]\nname = \"web_fetch\"\ndescription = \"d\"\nprogram = \"true\"")
                .expect("parses");
        let message = format!("{:#}", build(config).await.err().expect("clash"));
        assert!(
            message.contains(
                "tool `web_fetch` is defined twice, by the built-in tools and by [[command]]"
            ),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_empty_file_gives_the_two_built_ins() {
        let runner = build(parse("").expect("empty file")).await.expect("builds");
        let infos = runner.infos();
        let names: Vec<_> = infos
            .iter()
            .map(|i| (i.name.as_str(), i.available))
            .collect();
        assert_eq!(names, [("web_fetch", true), ("web_search", false)]);
    }
}
