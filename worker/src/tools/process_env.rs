//! The environment of tool processes (`[[command]]` programs and `[[mcp]]` servers).
//!
//! A worker's environment holds the cluster join token and API keys; a tool program is outside
//! code and gets none of it by default. It starts from a clean environment with only what
//! programs need to run at all, plus the entry's `env` table and the variables it names in
//! `pass_env` (for secrets an operator keeps out of the config file). The alternative, inheriting
//! everything, would hand the cluster secret to every MCP server.

use std::collections::BTreeMap;

/// Variables copied from the worker when set: enough to find programs and behave normally.
const BASELINE: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// The variables a tool process gets, read from the worker's environment now.
pub fn child_env(env: &BTreeMap<String, String>, pass_env: &[String]) -> Vec<(String, String)> {
    let inherited = BASELINE
        .iter()
        .map(|name| name.to_string())
        .chain(pass_env.iter().cloned())
        .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)));
    let mut vars: BTreeMap<String, String> = inherited.collect();
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars.into_iter().collect()
}
