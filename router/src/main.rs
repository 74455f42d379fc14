//! `auxot-router`: the command line over the router library.
#![forbid(unsafe_code)]

use auxot_router::{cli, store};
use clap::Parser as _;

fn print_setup(out: &store::SetupOutput, data_dir: &std::path::Path, json: bool) {
    if json {
        let value = serde_json::json!({
            "cluster_id": out.cluster_id,
            "data_dir": data_dir,
            "api_key": out.api_key,
            "join_token": out.join_token,
        });
        println!("{value}");
        return;
    }
    let dir = data_dir.display();
    println!("Created cluster {} in {dir}\n", out.cluster_id);
    println!("API key (shown once: store it now; the router keeps only its Argon2id hash):");
    println!("  {}\n", out.api_key);
    println!("Worker join token (shown once; it carries the cluster secret, keep it private):");
    println!("  {}\n", out.join_token);
    println!("Next:");
    println!("  auxot-router serve --data-dir {dir}");
    println!(
        "  auxot-worker join <router-host>:7946 --token {} --model <model.gguf | dir | org/name>",
        out.join_token
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
        cli::Command::Setup(args) => {
            let out = store::setup(&args.data.data_dir, &args.key_name)?;
            print_setup(&out, &args.data.data_dir, args.json);
            Ok(())
        }
        cli::Command::Serve(args) => serve(args).await,
        cli::Command::Keys(cli::KeysCommand::Create { data, name }) => {
            let key = store::add_key(&data.data_dir, &name)?;
            println!("{key}");
            eprintln!("(shown once; running routers pick it up when restarted)");
            Ok(())
        }
        cli::Command::Keys(cli::KeysCommand::List { data }) => {
            for key in store::list_keys(&data.data_dir)? {
                println!("{}\t{}\tcreated {}", key.id, key.name, key.created_at);
            }
            Ok(())
        }
        cli::Command::Keys(cli::KeysCommand::Revoke { data, id }) => {
            if store::revoke_key(&data.data_dir, &id)? {
                println!("revoked {id}");
                Ok(())
            } else {
                anyhow::bail!("no key with id {id}")
            }
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
