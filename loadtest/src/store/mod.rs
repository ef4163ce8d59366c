//! The store benchmark: durable writes per second and latency of a 3-member flotilla store,
//! optionally against a 3-member etcd on the same machine, both on loopback.
//!
//! `flotilla-loadtest store --nodes 3 --writers 64 --writes 20000 --value-bytes 256 --json out.json`
//! starts the members as separate processes (`flotilla-loadtest store-member`), waits for a
//! leader, runs the writers against it over gRPC, and reports writes/s and p50/p99 latency.

mod etcd;
mod member;

use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flotilla_raft::{Command, Json, RemoteStore};

pub use member::{run_member, MemberArgs};

/// Arguments of `flotilla-loadtest store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Members in the group.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 64)]
    pub writers: usize,
    /// Total writes, spread over the writers.
    #[arg(long, default_value_t = 20_000)]
    pub writes: usize,
    /// Size of each written value in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also run the same workload against a 3-member etcd (needs `etcd` on the PATH).
    #[arg(long, value_parser = ["etcd"])]
    pub against: Option<String>,
    /// Where members keep their data (a fresh temporary directory by default).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Measured {
    /// `flotilla-store` or `etcd`.
    pub scenario: &'static str,
    /// Members.
    pub nodes: u64,
    /// Concurrent writers.
    pub writers: usize,
    /// Acknowledged writes.
    pub writes: usize,
    /// Value size.
    pub value_bytes: usize,
    /// Throughput.
    pub writes_per_sec: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th-percentile latency.
    pub p99_ms: f64,
}

impl Measured {
    fn json(&self) -> String {
        format!(
            "{{\"scenario\":\"{}\",\"nodes\":{},\"writers\":{},\"writes\":{},\"value_bytes\":{},\"writes_per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
            self.scenario, self.nodes, self.writers, self.writes, self.value_bytes, self.writes_per_sec, self.p50_ms, self.p99_ms
        )
    }

    fn print(&self) {
        println!(
            "{:<14} nodes={} writers={} writes={} value_bytes={}: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms",
            self.scenario, self.nodes, self.writers, self.writes, self.value_bytes, self.writes_per_sec, self.p50_ms, self.p99_ms
        );
    }
}

/// Latencies of all writes and the wall time they took, summarized.
pub(crate) fn summarize(
    scenario: &'static str,
    args: &StoreArgs,
    mut lat: Vec<Duration>,
    elapsed: Duration,
) -> Measured {
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    Measured {
        scenario,
        nodes: args.nodes,
        writers: args.writers,
        writes: lat.len(),
        value_bytes: args.value_bytes,
        writes_per_sec: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// Free loopback ports, found by binding port 0.
pub(crate) fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("finding free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Child processes killed when dropped.
pub(crate) struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Per-writer share of `total` writes.
pub(crate) fn shares(total: usize, writers: usize) -> Vec<usize> {
    (0..writers)
        .map(|w| total / writers + usize::from(w < total % writers))
        .collect()
}

/// Run `flotilla-loadtest store`.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.writers == 0 || args.writes == 0 {
        bail!("--nodes, --writers and --writes must be positive");
    }
    let tmp = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("flotilla-store-bench-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

    let ours = run_flotilla(&args, &tmp.join("flotilla")).await?;
    ours.print();
    let theirs = match args.against.as_deref() {
        Some("etcd") => {
            let m = etcd::run(&args, &tmp.join("etcd")).await?;
            m.print();
            println!(
                "ratio flotilla/etcd: {:.2}x writes/s, p99 {:.2} ms vs {:.2} ms",
                ours.writes_per_sec / m.writes_per_sec.max(1e-9),
                ours.p99_ms,
                m.p99_ms
            );
            Some(m)
        }
        _ => None,
    };
    if let Some(path) = &args.json {
        let mut out = ours.json();
        if let Some(t) = &theirs {
            out.pop();
            out.push_str(&format!(
                ",\"against\":{},\"ratio_writes_per_sec\":{:.3}}}",
                t.json(),
                ours.writes_per_sec / t.writes_per_sec.max(1e-9)
            ));
        }
        std::fs::write(path, out + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

async fn run_flotilla(args: &StoreArgs, dir: &std::path::Path) -> anyhow::Result<Measured> {
    let ports = free_ports(args.nodes as usize)?;
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().context("locating flotilla-loadtest")?;
    let mut children = Children(Vec::new());
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let log = std::fs::File::create(dir_file(dir, &format!("member-{id}.log"))?)?;
        let mut cmd = Process::new(&exe);
        cmd.args([
            "store-member",
            "--id",
            &id.to_string(),
            "--listen",
            addr,
            "--peers",
            &peers,
        ])
        .arg("--dir")
        .arg(dir.join(format!("member-{id}")))
        .stdout(Stdio::null())
        .stderr(log);
        if id == 1 {
            cmd.arg("--init");
        }
        children
            .0
            .push(cmd.spawn().context("starting a store member")?);
    }

    let leader = find_leader(&addrs).await?;
    let value = "x".repeat(args.value_bytes);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // One HTTP/2 connection per 16 writers, as a client library pool would.
    let conns: Vec<RemoteStore> = (0..args.writers.div_ceil(16))
        .map(|_| RemoteStore::connect_lazy(&leader))
        .collect::<Result<_, _>>()?;
    for (w, n) in shares(args.writes, args.writers).into_iter().enumerate() {
        let mut client = conns[w % conns.len()].clone();
        let value = value.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let cmd = Command::PutApp {
                    app: format!("bench/w{w}-{i}"),
                    spec: Json::from(flotilla_raft::serde_json::Value::String(value.clone())),
                    at: i as i64,
                };
                let t = Instant::now();
                client.propose(std::slice::from_ref(&cmd)).await?;
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
    Ok(summarize("flotilla-store", args, lat, elapsed))
}

fn dir_file(dir: &std::path::Path, name: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(name))
}

/// Poll the members until one confirms it leads (at most 60 s).
async fn find_leader(addrs: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let clients: Vec<RemoteStore> = addrs
        .iter()
        .map(|a| RemoteStore::connect_lazy(a))
        .collect::<Result<_, _>>()?;
    loop {
        for (addr, c) in addrs.iter().zip(&clients) {
            if let Ok(true) = c.clone().is_leader().await {
                return Ok(addr.clone());
            }
        }
        if Instant::now() > deadline {
            bail!("no store member became leader within 60 s (see member-*.log)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
