//! The tools configuration file (TOML) of a tools worker.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

use super::{CallLimits, ToolRunner};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolsConfig {
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Limits applied to every call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
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
        }
    }
}

/// Reads the file and builds the tools it describes.
pub fn load(path: &Path) -> anyhow::Result<ToolRunner> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config: ToolsConfig = toml::from_str(&text)?;
    let limits = CallLimits {
        timeout: std::time::Duration::from_secs(config.limits.timeout_secs),
        max_output_bytes: config.limits.max_output_bytes,
    };
    Ok(ToolRunner::new(Vec::new(), limits))
}
