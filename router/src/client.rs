//! The admin API as the command line uses it: `auxot-router tokens ...` and `workers ...` talk
//! to a running router, so a change reaches every router through replication.

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::cli::AdminClient;

impl AdminClient {
    /// The admin key, from `--admin-key-file` or `--admin-key` / `AUXOT_ADMIN_KEY`.
    fn key(&self) -> anyhow::Result<String> {
        if let Some(path) = &self.admin_key_file {
            let key = std::fs::read_to_string(path)
                .with_context(|| format!("reading the admin key from {}", path.display()))?;
            return Ok(key.trim().to_string());
        }
        match &self.admin_key {
            Some(key) => Ok(key.trim().to_string()),
            None => bail!(
                "give the admin key printed by `auxot-router setup` with --admin-key-file or AUXOT_ADMIN_KEY"
            ),
        }
    }

    /// Calls `method path` with `body`, returning the JSON answer or the router's error.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.router.trim_end_matches('/'));
        let client = reqwest::Client::new();
        let request = match method {
            "POST" => client.post(&url).json(&body.unwrap_or(Value::Null)),
            _ => client.get(&url),
        };
        let response = request
            .bearer_auth(self.key()?)
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let message = answer["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| answer.to_string());
            bail!("{url}: {status}: {message}");
        }
        Ok(answer)
    }
}
