//! `auxot-router`: the command line over the router library.
#![forbid(unsafe_code)]

use auxot_router::cli::{self, Command, KeysCommand, TokensCommand, WorkersCommand};
use auxot_router::keys::Scope;
use auxot_router::store;
use clap::Parser as _;
use serde_json::{json, Value};

fn print_setup(out: &store::SetupOutput, data_dir: &std::path::Path, json: bool) {
    if json {
        let value = json!({
            "cluster_id": out.cluster_id,
            "data_dir": data_dir,
            "api_key": out.api_key,
            "admin_key": out.admin_key,
            "join_token": out.join_token,
            "offline_root_key": out.offline_root,
        });
        println!("{value}");
        return;
    }
    let dir = data_dir.display();
    println!("Cluster {} in {dir}\n", out.cluster_id);
    if let Some(api_key) = &out.api_key {
        println!("API key (shown once: store it now; the router keeps only its Argon2id hash):");
        println!("  {api_key}\n");
    }
    println!("Admin key (shown once; for `auxot-router tokens|workers` and /api/admin):");
    println!("  {}\n", out.admin_key);
    println!("Worker join token (shown once; it lets a host ask for a worker certificate):");
    println!("  {}\n", out.join_token);
    if let Some(root) = &out.offline_root {
        println!(
            "The root CA's key is in {}: move it offline. Routers hold only the intermediate.\n",
            root.display()
        );
    }
    println!("Next:");
    println!("  auxot-router serve --data-dir {dir}");
    println!("  echo '<join token>' > token && chmod 600 token");
    println!("  auxot-worker join <router-host>:7946 --token-file token --model <model.gguf | dir | org/name>");
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

async fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let listeners =
        auxot_router::Listeners::bind(args.http_addr, args.gossip_addr, args.quic_addr)?
            .with_metrics(args.metrics_addr)?;
    let router = auxot_router::start(&args, listeners).await?;
    auxot_common::signal::stop_signal().await;
    tokio::select! {
        _ = router.shutdown() => {}
        _ = auxot_common::signal::stop_signal() => tracing::warn!("second signal: stopping now"),
    }
    Ok(())
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Setup(args) => {
            let out = store::setup(
                &args.data.data_dir,
                &args.key_name,
                args.offline_root.as_deref(),
            )?;
            print_setup(&out, &args.data.data_dir, args.json);
            Ok(())
        }
        Command::Migrate(args) => {
            let out = store::migrate(&args.data.data_dir)?;
            print_setup(&out, &args.data.data_dir, args.json);
            if !args.json {
                println!("\nCopy {} to every router, restart them, and rejoin each worker with the new join token.", args.data.data_dir.display());
            }
            Ok(())
        }
        Command::Serve(args) => serve(args).await,
        Command::Keys(KeysCommand::Create { data, name, admin }) => {
            let scope = if admin { Scope::Admin } else { Scope::Api };
            let key = store::add_key(&data.data_dir, &name, scope)?;
            println!("{key}");
            eprintln!("(shown once; running routers pick it up within --keys-reload-secs)");
            Ok(())
        }
        Command::Keys(KeysCommand::List { data }) => {
            for key in store::list_keys(&data.data_dir)? {
                let scope = match key.scope {
                    Scope::Api => "api",
                    Scope::Admin => "admin",
                };
                println!(
                    "{}\t{scope}\t{}\tcreated {}",
                    key.id, key.name, key.created_at
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { data, id }) => {
            if store::revoke_key(&data.data_dir, &id)? {
                println!("revoked {id}");
                Ok(())
            } else {
                anyhow::bail!("no key with id {id}")
            }
        }
        Command::Tokens(TokensCommand::Create {
            client,
            role,
            name,
            ttl_hours,
        }) => {
            let body = json!({"role": role, "name": name, "ttl_secs": ttl_hours.map(|h| h * 3600)});
            let answer = client
                .call("POST", "/api/admin/v1/tokens", Some(body))
                .await?;
            println!("{}", answer["token"].as_str().unwrap_or_default());
            eprintln!("(shown once; token id {})", answer["id"]);
            Ok(())
        }
        Command::Tokens(TokensCommand::List { client }) => {
            print_json(&client.call("GET", "/api/admin/v1/tokens", None).await?);
            Ok(())
        }
        Command::Tokens(TokensCommand::Revoke { client, id }) => {
            let path = format!("/api/admin/v1/tokens/{id}/revoke");
            print_json(&client.call("POST", &path, None).await?);
            Ok(())
        }
        Command::Workers(WorkersCommand::List { client }) => {
            let answer = client.call("GET", "/api/admin/v1/workers", None).await?;
            println!("NODE\tROLE\tREADINESS\tMODELS\tCERT EXPIRES (unix)");
            for w in answer["workers"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    w["node_id"].as_str().unwrap_or_default(),
                    w["role"].as_str().unwrap_or_default(),
                    w["readiness"].as_str().unwrap_or_default(),
                    w["models"],
                    w["certificate_expires_at"],
                );
            }
            for r in answer["revoked"].as_array().into_iter().flatten() {
                println!(
                    "{}\trevoked at {}",
                    r["node_id"].as_str().unwrap_or_default(),
                    r["revoked_at"]
                );
            }
            Ok(())
        }
        Command::Workers(WorkersCommand::Revoke {
            client,
            node,
            reason,
        }) => {
            let path = format!("/api/admin/v1/workers/{node}/revoke");
            print_json(
                &client
                    .call("POST", &path, Some(json!({"reason": reason})))
                    .await?,
            );
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    auxot_common::logging::init(cli.log_format);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("auxot-router: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
