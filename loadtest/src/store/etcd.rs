//! The same workload against a 3-member etcd cluster on loopback, through etcd's gRPC KV API.

use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla_proto::etcd::kv_client::KvClient;
use flotilla_proto::etcd::maintenance_client::MaintenanceClient;
use flotilla_proto::etcd::{PutRequest, StatusRequest};
use tonic::transport::{Channel, Endpoint};

use super::{free_ports, shares, summarize, Children, Measured, StoreArgs};

fn channel(addr: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Start etcd members, find the leader, run the writers, stop etcd.
pub(super) async fn run(args: &StoreArgs, dir: &Path) -> anyhow::Result<Measured> {
    let n = args.nodes as usize;
    let ports = free_ports(2 * n)?;
    let client: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", ports[i])).collect();
    let peer: Vec<String> = (0..n)
        .map(|i| format!("http://127.0.0.1:{}", ports[n + i]))
        .collect();
    let cluster = (0..n)
        .map(|i| format!("e{}={}", i + 1, peer[i]))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut children = Children(Vec::new());
    for i in 0..n {
        let log = std::fs::File::create(dir.join(format!("etcd-{}.log", i + 1)))?;
        let url = format!("http://{}", client[i]);
        let child = Process::new("etcd")
            .args(["--name", &format!("e{}", i + 1)])
            .arg("--data-dir")
            .arg(dir.join(format!("e{}", i + 1)))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer[i],
                "--initial-advertise-peer-urls",
                &peer[i],
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
            ])
            .args([
                "--initial-cluster-token",
                "flotilla-bench",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (is the `etcd` binary on the PATH?)")?;
        children.0.push(child);
    }
    let leader = find_leader(&client).await?;

    let value = vec![b'x'; args.value_bytes];
    let start = Instant::now();
    let conns: Vec<Channel> = (0..args.writers.div_ceil(16))
        .map(|_| channel(&leader))
        .collect::<Result<_, _>>()?;
    let mut tasks = tokio::task::JoinSet::new();
    for (w, count) in shares(args.writes, args.writers).into_iter().enumerate() {
        let mut kv = KvClient::new(conns[w % conns.len()].clone());
        let value = value.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(count);
            for i in 0..count {
                let req = PutRequest {
                    key: format!("bench/w{w}-{i}").into_bytes(),
                    value: value.clone(),
                    ..Default::default()
                };
                let t = Instant::now();
                kv.put(req).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        });
    }
    let mut lat = Vec::with_capacity(args.writes);
    while let Some(r) = tasks.join_next().await {
        lat.extend(r.context("writer task")??);
    }
    let elapsed = start.elapsed();
    drop(children);
    Ok(summarize("etcd", args, lat, elapsed))
}

/// Ask each member for its status until one reports itself as leader (at most 60 s).
async fn find_leader(client: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for addr in client {
            let mut m = MaintenanceClient::new(channel(addr)?);
            if let Ok(resp) = m.status(StatusRequest {}).await {
                let s = resp.into_inner();
                let me = s.header.map(|h| h.member_id).unwrap_or(0);
                if s.leader != 0 && s.leader == me {
                    return Ok(addr.clone());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("etcd elected no leader within 60 s (see etcd-*.log)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
