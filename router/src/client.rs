//! The admin API as the command line uses it: `auxot-router keys ...`, `tokens ...`,
//! `workers ...` and `status` talk to a running router, so a change reaches every router
//! through replication (`keys` can also work offline on a data directory). Printing the
//! answers for the operator is this module's job, hence stdout here and nowhere else in the
//! library.
#![allow(clippy::print_stdout)]

use anyhow::{bail, Context as _};
use serde_json::Value;

use serde_json::json;

use crate::cli::{AdminClient, KeysCommand, LimitArgs};
use crate::keys::{KeyLimits, Scope};
use crate::store;

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
            "PATCH" => client.patch(&url).json(&body.unwrap_or(Value::Null)),
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

/// A limit flag's value: a number, or `none` for no limit.
fn limit(value: &str) -> anyhow::Result<Option<u64>> {
    match value {
        "none" | "" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .with_context(|| format!("`{n}` is not a number (or `none`)")),
    }
}

impl LimitArgs {
    /// `base` with the limits given on the command line applied.
    fn apply(&self, mut base: KeyLimits) -> anyhow::Result<KeyLimits> {
        let fields = [
            (&self.rpm, &mut base.requests_per_minute),
            (&self.tpm, &mut base.tokens_per_minute),
            (&self.concurrent, &mut base.max_concurrent),
            (&self.budget, &mut base.token_budget),
        ];
        for (given, field) in fields {
            if let Some(value) = given {
                *field = limit(value)?;
            }
        }
        Ok(base)
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Api => "api",
        Scope::Admin => "admin",
    }
}

/// One line per key: id, scope, name, limits, requests and tokens this minute and in all.
fn print_keys(keys: &[Value]) {
    println!("ID\tSCOPE\tNAME\tLIMITS\tREQUESTS (MIN/TOTAL)\tTOKENS (MIN/TOTAL)\tREVOKED");
    for key in keys {
        let usage = &key["usage"];
        let tokens = |w: &Value| {
            w["prompt_tokens"].as_u64().unwrap_or(0) + w["completion_tokens"].as_u64().unwrap_or(0)
        };
        println!(
            "{}\t{}\t{}\t{}\t{}/{}\t{}/{}\t{}",
            key["id"].as_str().unwrap_or_default(),
            key["scope"].as_str().unwrap_or_default(),
            key["name"].as_str().unwrap_or_default(),
            key["limits"],
            usage["minute"]["requests"],
            usage["total"]["requests"],
            tokens(&usage["minute"]),
            tokens(&usage["total"]),
            key["revoked_at"],
        );
    }
}

/// `auxot-router keys ...`: through a router's admin API, or offline on a data directory.
pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            target,
            name,
            admin,
            limits,
        } => {
            let scope = if admin { Scope::Admin } else { Scope::Api };
            let limits = limits.apply(KeyLimits::default())?;
            if let Some(dir) = &target.data_dir {
                let key = store::add_key(dir, &name, scope, limits)?;
                println!("{key}");
                eprintln!("(shown once; running routers pick it up within --keys-reload-secs)");
                return Ok(());
            }
            let body = json!({"name": name, "scope": scope, "limits": limits});
            let answer = target
                .client
                .call("POST", "/api/admin/v1/keys", Some(body))
                .await?;
            println!("{}", answer["key"].as_str().unwrap_or_default());
            eprintln!(
                "(shown once; key id {}, accepted by every router within seconds)",
                answer["id"]
            );
            Ok(())
        }
        KeysCommand::List { target } => {
            if let Some(dir) = &target.data_dir {
                println!("ID\tSCOPE\tNAME\tCREATED");
                for key in store::list_keys(dir)? {
                    println!(
                        "{}\t{}\t{}\t{}",
                        key.id,
                        scope_name(key.scope),
                        key.name,
                        key.created_at
                    );
                }
                return Ok(());
            }
            let answer = target
                .client
                .call("GET", "/api/admin/v1/keys", None)
                .await?;
            print_keys(answer["keys"].as_array().map_or(&[], Vec::as_slice));
            Ok(())
        }
        KeysCommand::Get { client, id } => {
            let path = format!("/api/admin/v1/keys/{id}");
            let answer = client.call("GET", &path, None).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string())
            );
            Ok(())
        }
        KeysCommand::Limits { client, id, limits } => {
            let path = format!("/api/admin/v1/keys/{id}");
            let current = client.call("GET", &path, None).await?;
            let base: KeyLimits = serde_json::from_value(current["limits"].clone())
                .context("reading the key's limits")?;
            let limits = limits.apply(base)?;
            let answer = client
                .call("PATCH", &path, Some(json!({"limits": limits})))
                .await?;
            println!("{} limits: {}", id, answer["limits"]);
            Ok(())
        }
        KeysCommand::Revoke { target, id } => {
            if let Some(dir) = &target.data_dir {
                if !store::revoke_key(dir, &id)? {
                    bail!("no key with id {id} in {}", dir.display());
                }
                println!("revoked {id} (running routers stop accepting it when they next re-read the keys)");
                return Ok(());
            }
            let path = format!("/api/admin/v1/keys/{id}/revoke");
            target.client.call("POST", &path, None).await?;
            println!("revoked {id} on every router");
            Ok(())
        }
    }
}

/// `auxot-router status`: the cluster in one table.
pub async fn status(client: &AdminClient) -> anyhow::Result<()> {
    let answer = client.call("GET", "/api/admin/v1/cluster", None).await?;
    println!("NODE\tROLE\tVERSION\tREADINESS\tMODELS\tLOAD/CAPACITY\tADDRESS");
    for node in answer["nodes"].as_array().into_iter().flatten() {
        let models = node["models"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let load = if node["role"] == "router" {
            "-".to_string()
        } else {
            format!("{}/{}", node["load"], node["capacity"])
        };
        let marker = if node["this_router"] == true {
            " (this one)"
        } else {
            ""
        };
        println!(
            "{}{marker}\t{}\t{}\t{}\t{}\t{load}\t{}",
            node["node_id"].as_str().unwrap_or_default(),
            node["role"].as_str().unwrap_or_default(),
            node["version"].as_str().unwrap_or("?"),
            node["readiness"].as_str().unwrap_or_default(),
            if models.is_empty() { "-" } else { &models },
            node["address"].as_str().unwrap_or_default(),
        );
    }
    Ok(())
}
