//! Two routers and three workers (synthetic engine) as real processes: load spreads, a worker
//! killed under load loses no request (streams it had started continue elsewhere), a drained
//! worker loses nothing, a joining worker gets traffic from both routers, cancellation reaches
//! the worker across routers, and a restarted worker is not evicted by its old incarnation.

use std::time::Duration;

use auxot_tests::load::{by_worker, load, one, Outcome};
use auxot_tests::{Cluster, WorkerOptions};
use serde_json::json;

/// A synthetic worker: `ttft` ms to the first token, then `tokens` tokens at `rate` per second.
fn synthetic(name: &str, ttft: u64, tokens: u32, rate: u32, slots: u32) -> WorkerOptions {
    WorkerOptions {
        synthetic: true,
        name: Some(name.into()),
        args: vec![
            "--synthetic-ttft-ms".into(),
            ttft.to_string(),
            "--synthetic-tokens".into(),
            tokens.to_string(),
            "--synthetic-tokens-per-sec".into(),
            rate.to_string(),
            "--max-seqs".into(),
            slots.to_string(),
        ],
        ..Default::default()
    }
}

/// Every request here has the same prompt, so the routers use power-of-two-choices, whose spread
/// these tests check (prefix affinity would keep the one prefix on one worker up to its bound).
async fn two_routers_three_workers(workers: [WorkerOptions; 3]) -> Cluster {
    let mut cluster = Cluster::with_router(&["--routing", "p2c"]);
    let seed = cluster.seed();
    cluster.start_router(&[seed], &["--routing", "p2c"]);
    // Workers join through different seeds: any node will do.
    let seeds = [seed, cluster.routers[1].gossip, seed];
    for (options, seed) in workers.into_iter().zip(seeds) {
        cluster.start_worker(seed, options);
    }
    cluster.wait_workers(0, 3).await;
    cluster.wait_workers(1, 3).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_spreads_joins_and_cancels_across_routers() {
    let mut cluster = two_routers_three_workers([
        synthetic("w0", 10, 8, 200, 8),
        synthetic("w1", 10, 8, 200, 8),
        synthetic("w2", 10, 8, 200, 8),
    ])
    .await;

    let outcomes = load(&cluster, 150, 6, |i| i % 2 == 0).await;
    let failed: Vec<_> = outcomes.iter().filter(|o| o.failed).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    let counts = by_worker(&outcomes);
    println!("requests per worker under uniform load: {counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    let fair = outcomes.len() as f64 / 3.0;
    for (worker, count) in &counts {
        assert!(
            (*count as f64) <= 1.5 * fair,
            "{worker} got {count} of {} (fair share {fair:.0}): {counts:?}",
            outcomes.len()
        );
    }

    // A joining worker becomes routable from both routers and gets traffic from each.
    let seed = cluster.routers[1].gossip;
    cluster.start_worker(seed, synthetic("late", 10, 8, 200, 8));
    cluster.wait_workers(0, 4).await;
    cluster.wait_workers(1, 4).await;
    let outcomes = load(&cluster, 60, 6, |_| false).await;
    for router in 0..2 {
        let served_late = outcomes[router * 60..(router + 1) * 60]
            .iter()
            .filter(|o| o.worker == "late")
            .count();
        assert!(
            served_late > 0,
            "router {router} never used the joining worker"
        );
    }

    // A client that disconnects through router 1 frees the worker; router 0, which only knows
    // the worker's gossiped in-flight count, sees it drop. The slow worker's answers take hours.
    let client = reqwest::Client::new();
    cluster.start_worker(
        cluster.routers[0].gossip,
        synthetic("slowpoke", 10, 100_000, 50, 8),
    );
    cluster.wait_workers(0, 5).await;
    cluster.wait_workers(1, 5).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        let response = cluster
            .post(&client, 1, "/api/openai/chat/completions")
            .json(&json!({
                "model": "auto", "stream": true, "messages": [{"role": "user", "content": "go"}],
            }))
            .send()
            .await
            .expect("request");
        let worker = response.headers().get("x-auxot-worker").cloned();
        if worker.as_ref().is_some_and(|w| w == "slowpoke") {
            held.push(response);
        } else {
            println!("went to {worker:?} status {}", response.status());
        }
    }
    assert!(!held.is_empty(), "no request went to the slow worker");
    let n = held.len() as u64;
    let busy = cluster
        .wait_health(0, Duration::from_secs(10), |h| {
            h["capacity"].as_array().is_some_and(|ws| {
                ws.iter()
                    .any(|w| w["worker"] == "slowpoke" && w["active"] == n)
            })
        })
        .await;
    println!(
        "router 0 sees the slow worker busy: {}",
        busy["active_jobs"]
    );
    drop(held);
    cluster
        .wait_health(0, Duration::from_secs(10), |h| {
            h["capacity"].as_array().is_some_and(|ws| {
                ws.iter()
                    .any(|w| w["worker"] == "slowpoke" && w["active"] == 0)
            })
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_under_load_loses_no_request() {
    let cluster = two_routers_three_workers([
        synthetic("w0", 300, 20, 40, 16),
        synthetic("w1", 300, 20, 40, 16),
        synthetic("w2", 300, 20, 40, 16),
    ])
    .await;
    let run = tokio::spawn({
        let cluster_urls = (
            cluster.router_url(0),
            cluster.router_url(1),
            cluster.api_key.clone(),
        );
        async move {
            let client = reqwest::Client::new();
            let mut tasks = Vec::new();
            for i in 0..160usize {
                let url = if i % 2 == 0 {
                    cluster_urls.0.clone()
                } else {
                    cluster_urls.1.clone()
                };
                let (client, key) = (client.clone(), cluster_urls.2.clone());
                tasks.push(tokio::spawn(async move {
                    one(&client, &url, &key, i % 3 != 0).await
                }));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.expect("task"));
            }
            outcomes
        }
    });
    cluster.wait_active(0, "w0").await;
    // Past the first token (300 ms): w0 is streaming when it dies.
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.workers[0].signal("KILL");
    let outcomes = run.await.expect("load");
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed).collect();
    let continued = outcomes
        .iter()
        .filter(|o| o.worker == "w0" && !o.failed)
        .count();
    println!(
        "killed a worker under load: {} requests, {} failed, {continued} that w0 had started completed elsewhere, per worker {:?}",
        outcomes.len(),
        failed.len(),
        by_worker(&outcomes)
    );
    // Streams that had output continue on another worker; the others are retried.
    assert!(
        failed.is_empty(),
        "{} requests lost to one killed worker: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        continued > 0,
        "w0 was killed before any of its answers had started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_loses_nothing_and_restarts_are_not_evicted_by_their_old_self() {
    let mut cluster = two_routers_three_workers([
        synthetic("w0", 200, 20, 40, 16),
        synthetic("w1", 200, 20, 40, 16),
        synthetic("w2", 200, 20, 40, 16),
    ])
    .await;
    let run = tokio::spawn({
        let (a, b, key) = (
            cluster.router_url(0),
            cluster.router_url(1),
            cluster.api_key.clone(),
        );
        async move {
            let client = reqwest::Client::new();
            let mut tasks = Vec::new();
            for i in 0..120usize {
                let url = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (client, key) = (client.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    one(&client, &url, &key, i % 2 == 0).await
                }));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.expect("task"));
            }
            outcomes
        }
    });
    cluster.wait_active(0, "w1").await;
    cluster.workers[1].signal("TERM");
    let outcomes = run.await.expect("load");
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed).collect();
    println!(
        "drained a worker under load: {} requests, per worker {:?}",
        outcomes.len(),
        by_worker(&outcomes)
    );
    assert!(
        failed.is_empty(),
        "draining lost {} requests: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        cluster.workers[1]
            .wait_exit(Duration::from_secs(60))
            .is_some(),
        "the drained worker should exit"
    );
    cluster.wait_workers(0, 2).await;

    // Kill w2 and restart it at once under the same name: the old incarnation's death must not
    // take the new one out of routing.
    cluster.workers[2].signal("KILL");
    cluster.workers[2].wait_exit(Duration::from_secs(10));
    let seed = cluster.routers[0].gossip;
    cluster.start_worker(seed, synthetic("w2", 10, 4, 200, 16));
    for router in 0..2 {
        cluster
            .wait_health(router, Duration::from_secs(30), |h| {
                h["capacity"]
                    .as_array()
                    .is_some_and(|ws| ws.iter().any(|w| w["worker"] == "w2"))
            })
            .await;
    }
    // Long enough for the failure detector to declare the old incarnation dead.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let outcomes = load(&cluster, 20, 4, |_| false).await;
    assert!(
        outcomes.iter().all(|o| !o.failed),
        "{:?}",
        outcomes.iter().find(|o| o.failed)
    );
    for router in 0..2 {
        let used = outcomes[router * 20..(router + 1) * 20]
            .iter()
            .filter(|o| o.worker == "w2")
            .count();
        assert!(
            used > 0,
            "router {router} stopped routing to the restarted worker"
        );
    }
}
