//! `[[command]]` tools: a local program that reads the call's input as JSON on stdin and prints
//! its result as JSON on stdout.
//!
//! One process per call keeps tools stateless and lets them be written in anything. A non-zero
//! exit or output that is not JSON is the program failing, reported as Upstream with the end of
//! its stderr, where programs explain themselves. The child is killed when the call is dropped
//! (`kill_on_drop`), which is how both this tool's own `timeout_secs` and the runner's limit stop
//! it. Stdout is read up to the
//! runner's output limit so a runaway program cannot fill the worker's memory.
//!
//! Each call's program leads a process group of its own, and the whole group is killed when the
//! call ends (finished, timed out or abandoned): a program that started children of its own
//! (`sh -c 'x & y'`, a daemonizing helper) cannot leave them running after its call.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::ToolInfo;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use super::input;
use super::process_env::child_env;
use super::runner::{check_tool_name, Tool};

/// A call's process group, killed whole when dropped.
struct ProcessGroup(nix::unistd::Pid);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // Gone already (ESRCH) is fine: nothing was left behind.
        let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Stderr kept for error messages, and the part of it shown.
const STDERR_KEPT_BYTES: usize = 64 * 1024;
const STDERR_SHOWN_CHARS: usize = 2000;

/// One `[[command]]` in the tools configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The tool's name, as models call it.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the input object; an object with no declared properties when absent.
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
    /// The program started for each call.
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Shorter limit than `[limits] timeout_secs` for this command.
    pub timeout_secs: Option<u64>,
    /// Variables set for the program.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the worker's own environment variables passed through (for secrets kept out of
    /// this file).
    #[serde(default)]
    pub pass_env: Vec<String>,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

impl CommandConfig {
    /// Checks what serde cannot: a name model APIs accept, an object schema, a usable timeout.
    pub fn check(&self) -> anyhow::Result<()> {
        let what = format!("[[command]] `{}`", self.name);
        check_tool_name(&self.name).with_context(|| what.clone())?;
        if self.parameters.get("type").and_then(|t| t.as_str()) != Some("object") {
            anyhow::bail!("{what}: parameters must be a JSON Schema for an object, for example parameters = {{ type = \"object\", properties = {{ text = {{ type = \"string\" }} }}, required = [\"text\"] }}");
        }
        if self.timeout_secs == Some(0) {
            anyhow::bail!("{what}: timeout_secs must be greater than 0");
        }
        Ok(())
    }
}

pub struct CommandTool {
    info: ToolInfo,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    max_stdout_bytes: usize,
}

impl CommandTool {
    pub fn new(config: &CommandConfig, max_stdout_bytes: usize) -> Self {
        CommandTool {
            info: ToolInfo {
                name: config.name.clone(),
                description: config.description.clone(),
                parameters: config.parameters.clone(),
                available: true,
            },
            program: config.program.clone(),
            args: config.args.clone(),
            env: child_env(&config.env, &config.pass_env),
            timeout: config.timeout_secs.map(Duration::from_secs),
            max_stdout_bytes,
        }
    }

    async fn run(&self, input: &Value) -> Result<Value, RemoteError> {
        let name = &self.info.name;
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own group, led by the program: its children are in it too.
            .process_group(0)
            .spawn()
            .map_err(|err| {
                // Another worker may have the program: Unavailable lets the router try it.
                RemoteError::new(
                    ErrorKind::Unavailable,
                    format!("tool `{name}`: could not start `{}`: {err}", self.program),
                )
            })?;
        let _group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(|pid| ProcessGroup(nix::unistd::Pid::from_raw(pid)));
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(RemoteError::internal(format!(
                "tool `{name}`: the child's pipes are missing"
            )));
        };
        let request = serde_json::to_vec(input)
            .map_err(|err| RemoteError::internal(format!("encoding the input: {err}")))?;
        // Writing and reading at once: a program may print before it has read all its input.
        let write = async move {
            // A program that ignores its input closes stdin early; that is not an error.
            let _ = stdin.write_all(&request).await;
            drop(stdin);
        };
        let (_, stdout, stderr, status) = tokio::join!(
            write,
            read_capped(stdout, self.max_stdout_bytes),
            read_capped(stderr, STDERR_KEPT_BYTES),
            child.wait(),
        );
        let status = status.map_err(|err| {
            RemoteError::internal(format!("tool `{name}`: waiting for the program: {err}"))
        })?;
        let (stdout, stdout_overflow) = stdout.map_err(|err| {
            RemoteError::internal(format!("tool `{name}`: reading stdout: {err}"))
        })?;
        let stderr = stderr.map(|(bytes, _)| bytes).unwrap_or_default();
        let failed = |what: String| {
            RemoteError::new(
                ErrorKind::Upstream,
                format!("tool `{name}` {what}{}", stderr_note(&stderr)),
            )
        };
        if stdout_overflow {
            return Err(failed(format!(
                "printed more than {} bytes",
                self.max_stdout_bytes
            )));
        }
        if !status.success() {
            return Err(failed(format!("failed ({status})")));
        }
        serde_json::from_slice(&stdout).map_err(|err| {
            let shown = String::from_utf8_lossy(&stdout);
            let shown: String = shown.chars().take(200).collect();
            failed(format!(
                "did not print one JSON value on stdout ({err}); it printed {shown:?}"
            ))
        })
    }
}

/// Reads a pipe to its end, keeping the first `cap` bytes; the flag says whether more came.
/// Reading on past the cap keeps the program from blocking on a full pipe.
async fn read_capped(
    mut pipe: impl AsyncRead + Unpin,
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut overflow = false;
    let mut buf = [0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, overflow));
        }
        let room = cap - kept.len();
        kept.extend_from_slice(&buf[..n.min(room)]);
        overflow |= n > room;
    }
}

/// "; stderr: ..." with the end of stderr, or nothing.
fn stderr_note(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let count = text.chars().count();
    let tail: String = text
        .chars()
        .skip(count.saturating_sub(STDERR_SHOWN_CHARS))
        .collect();
    let cut = if count > STDERR_SHOWN_CHARS {
        "…"
    } else {
        ""
    };
    format!("; stderr: {cut}{tail}")
}

#[async_trait]
impl Tool for CommandTool {
    fn info(&self) -> ToolInfo {
        self.info.clone()
    }

    async fn call(&self, input: Value) -> Result<Value, RemoteError> {
        input::check_required(&self.info.name, &self.info.parameters, &input)?;
        match self.timeout {
            None => self.run(&input).await,
            Some(limit) => tokio::time::timeout(limit, self.run(&input))
                .await
                .map_err(|_| {
                    RemoteError::new(
                        ErrorKind::Timeout,
                        format!(
                            "tool `{}` did not finish within {}s and was stopped",
                            self.info.name,
                            limit.as_secs()
                        ),
                    )
                })?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sh(name: &str, script: &str, timeout_secs: Option<u64>) -> CommandTool {
        let config = CommandConfig {
            name: name.into(),
            description: "test".into(),
            parameters: json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            timeout_secs,
            env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
            pass_env: Vec::new(),
        };
        CommandTool::new(&config, 1024)
    }

    #[tokio::test]
    async fn the_input_goes_to_stdin_and_stdout_is_the_result() {
        let tool = sh("echo", "cat", None);
        let input = json!({"text": "hello", "n": [1, 2]});
        assert_eq!(tool.call(input.clone()).await, Ok(input));
        let env = sh("env", "printf '{\"g\": \"%s\"}' \"$GREETING\"", None);
        assert_eq!(env.call(json!({"text": ""})).await, Ok(json!({"g": "hi"})));
    }

    #[tokio::test]
    async fn a_failing_program_is_an_upstream_error_with_its_stderr() {
        let tool = sh("fails", "echo 'no such city' >&2; exit 3", None);
        let err = tool.call(json!({"text": "x"})).await.expect_err("fails");
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert_eq!(
            err.message,
            "tool `fails` failed (exit status: 3); stderr: no such city"
        );
        let not_json = sh("prose", "echo 'sure, here you go'", None);
        let err = not_json
            .call(json!({"text": "x"}))
            .await
            .expect_err("prose");
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert!(
            err.message
                .contains("did not print one JSON value on stdout"),
            "{}",
            err.message
        );
        let chatty = sh("chatty", "yes '\"x\"' | head -c 100000", None);
        let err = chatty
            .call(json!({"text": "x"}))
            .await
            .expect_err("too much");
        assert!(
            err.message.contains("printed more than 1024 bytes"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn a_slow_program_is_stopped_at_its_timeout() {
        let tool = sh("slow", "exec sleep 30", Some(1));
        let started = std::time::Instant::now();
        let err = tool.call(json!({"text": "x"})).await.expect_err("timeout");
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert_eq!(
            err.message,
            "tool `slow` did not finish within 1s and was stopped"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_timed_out_programs_children_are_stopped_with_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pidfile = dir.path().join("grandchild.pid");
        // The program starts a grandchild that would outlive it, then waits.
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let tool = sh("spawner", &script, Some(1));
        let err = tool.call(json!({"text": "x"})).await.expect_err("timeout");
        assert_eq!(err.kind, ErrorKind::Timeout);
        let pid = std::fs::read_to_string(&pidfile).expect("the grandchild's pid");
        let proc_dir = format!("/proc/{}", pid.trim());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie waiting for init to reap it.
        let alive = || {
            std::fs::read_to_string(format!("{proc_dir}/stat"))
                .map(|stat| !stat.contains(") Z "))
                .unwrap_or(false)
        };
        while alive() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !alive(),
            "the grandchild {} survived the timeout",
            pid.trim()
        );
    }

    #[tokio::test]
    async fn missing_programs_and_missing_fields_are_reported() {
        let mut tool = sh("ghost", "true", None);
        tool.program = "/nonexistent/auxot-tool".into();
        let err = tool.call(json!({"text": "x"})).await.expect_err("missing");
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(
            err.message
                .contains("could not start `/nonexistent/auxot-tool`"),
            "{}",
            err.message
        );
        let err = sh("echo", "cat", None)
            .call(json!({}))
            .await
            .expect_err("no text");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(
            err.message.contains("missing required field(s): text"),
            "{}",
            err.message
        );
    }
}
