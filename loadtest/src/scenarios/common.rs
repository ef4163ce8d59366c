//! What every scenario shares: the common flags, the machine description, per-process CPU
//! and memory sampling from `/proc`, and running the `flotilla` CLI against a node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// Flags shared by the scenarios.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// `flotilla node` processes to start.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Applications (A).
    #[arg(long, default_value_t = 200)]
    pub apps: usize,
    /// Simulated destination clusters (C); cluster `sim-0` is also the management cluster.
    #[arg(long, default_value_t = 4)]
    pub clusters: usize,
    /// ConfigMaps per application (R).
    #[arg(long, default_value_t = 1)]
    pub resources_per_app: usize,
    /// Directory for node data, logs, the Git repository and kubeconfigs (a temporary
    /// directory, removed at the end, when not given).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The `flotilla` binary (default: `flotilla` next to this executable).
    #[arg(long)]
    pub flotilla: Option<PathBuf>,
    /// Reconciliation workers per node (`flotilla node --workers`).
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Give up after this many seconds of measuring.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Leave Argo CD's `argocd.argoproj.io/manifest-generate-paths: .` annotation off the
    /// generated Applications, so that every commit refreshes every app (Argo CD's behaviour
    /// without it).
    #[arg(long)]
    pub no_generate_paths: bool,
}

impl CommonArgs {
    /// Check the sizes make sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.nodes == 0 || self.apps == 0 || self.clusters == 0 || self.resources_per_app == 0 {
            bail!("--nodes, --apps, --clusters and --resources-per-app must all be at least 1");
        }
        Ok(())
    }

    /// The `flotilla` binary to run, checked to exist.
    pub fn flotilla_binary(&self) -> anyhow::Result<PathBuf> {
        let path = match &self.flotilla {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .context("find this executable")?
                .with_file_name("flotilla"),
        };
        if !path.is_file() {
            bail!(
                "no flotilla binary at {} (build it with `cargo build -p flotilla-node`, or pass --flotilla PATH)",
                path.display()
            );
        }
        Ok(path)
    }
}

/// The working directory of a run: the one given with `--out`, or a temporary one that is
/// removed when this is dropped.
#[derive(Debug)]
pub struct OutDir {
    path: PathBuf,
    remove: bool,
}

impl OutDir {
    /// Create the directory (`--out` or a fresh one under the system temporary directory).
    pub fn create(given: Option<&Path>, scenario: &str) -> anyhow::Result<Self> {
        let (path, remove) = match given {
            Some(p) => (absolute(p)?, false),
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let name = format!(
                    "flotilla-loadtest-{scenario}-{}-{stamp}",
                    std::process::id()
                );
                (std::env::temp_dir().join(name), true)
            }
        };
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self { path, remove })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// The machine the run happens on: logical cores and CPU model.
pub fn machine() -> Value {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    // The load average when the result is written: how busy the machine was meanwhile.
    let load_average = std::fs::read_to_string("/proc/loadavg").ok().map(|t| {
        t.split_whitespace()
            .take(3)
            .filter_map(|v| v.parse::<f64>().ok())
            .collect::<Vec<_>>()
    });
    json!({"cores": cores, "cpu_model": model, "memory_gib": mem_gib,
           "load_average": load_average})
}

/// Resident memory (KiB) and CPU time (user + system, clock ticks) of a process.
fn read_proc(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((rss_kb, utime + stime))
}

/// What was sampled of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// Largest resident set seen, KiB.
    pub peak_rss_kb: u64,
    /// Resident set at the last sample, KiB.
    pub last_rss_kb: u64,
    /// CPU time at the last sample, clock ticks.
    pub cpu_ticks: u64,
    /// CPU time at the first sample, clock ticks.
    pub first_cpu_ticks: u64,
    /// Sum of the resident sets of all samples, KiB (for the mean).
    pub rss_sum_kb: u64,
    /// Samples taken.
    pub samples: u64,
}

impl ProcStats {
    /// Mean resident set over the samples, KiB.
    pub fn mean_rss_kb(&self) -> f64 {
        self.rss_sum_kb as f64 / self.samples.max(1) as f64
    }

    /// CPU time used between the first and the last sample, clock ticks.
    pub fn cpu_ticks_used(&self) -> u64 {
        self.cpu_ticks.saturating_sub(self.first_cpu_ticks)
    }
}

/// Samples `/proc` for a set of processes every 500 ms until dropped.
#[derive(Debug)]
pub struct ProcSampler {
    pids: Vec<(u64, u32)>,
    stats: Arc<Mutex<BTreeMap<u64, ProcStats>>>,
    task: tokio::task::JoinHandle<()>,
}

fn sample_into(pids: &[(u64, u32)], stats: &Mutex<BTreeMap<u64, ProcStats>>) {
    let Ok(mut map) = stats.lock() else { return };
    for &(id, pid) in pids {
        if let Some((rss, ticks)) = read_proc(pid) {
            let s = map.entry(id).or_insert_with(|| ProcStats {
                first_cpu_ticks: ticks,
                ..ProcStats::default()
            });
            s.peak_rss_kb = s.peak_rss_kb.max(rss);
            s.rss_sum_kb += rss;
            s.samples += 1;
            s.last_rss_kb = rss;
            s.cpu_ticks = s.cpu_ticks.max(ticks);
        }
    }
}

impl ProcSampler {
    /// Start sampling the processes `(node id, pid)`.
    pub fn start(pids: Vec<(u64, u32)>) -> Self {
        let stats = Arc::new(Mutex::new(BTreeMap::new()));
        sample_into(&pids, &stats);
        let task = {
            let (pids, stats) = (pids.clone(), stats.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    sample_into(&pids, &stats);
                }
            })
        };
        Self { pids, stats, task }
    }

    /// Take one more sample now and return what was seen per node id.
    pub fn finish(&self) -> BTreeMap<u64, ProcStats> {
        sample_into(&self.pids, &self.stats);
        self.stats.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for ProcSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` CPU times.
pub fn clock_ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// Whether progress bars stay hidden: stdout is not a terminal, or `CI` is set.
pub fn progress_hidden() -> bool {
    use std::io::IsTerminal as _;
    !std::io::stdout().is_terminal() || std::env::var_os("CI").is_some()
}

/// A progress bar over `len` items (`done/len what, elapsed`) on stdout, hidden when
/// [`progress_hidden`]; callers print plain progress lines instead when it is hidden.
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if progress_hidden() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stdout(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "  [{elapsed_precise}] {wide_bar} {pos}/{len} {prefix} {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_string());
    bar
}

/// A summary table: a title, then one line per `(figure, value, target)`; an empty target
/// leaves its column blank.
pub fn format_table(title: &str, rows: &[(String, String, String)]) -> String {
    let width = |f: fn(&(String, String, String)) -> &String, head: &str| {
        rows.iter()
            .map(|r| f(r).chars().count())
            .chain([head.len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(|r| &r.0, "FIGURE"), width(|r| &r.1, "VALUE"));
    let mut out = format!("{title}\n");
    let mut line = |a: &str, b: &str, c: &str| {
        let text = format!("  {a:<w0$}  {b:>w1$}  {c}");
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line("FIGURE", "VALUE", "TARGET");
    for (name, value, target) in rows {
        line(name, value, target);
    }
    out
}

/// Print [`format_table`] with a blank line before it.
pub fn print_table(title: &str, rows: &[(String, String, String)]) {
    println!();
    print!("{}", format_table(title, rows));
}

/// Run `flotilla <args> --server <api> -o json` and parse its output.
pub async fn cli_json(flotilla: &Path, api: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new(flotilla)
        .args(args)
        .args(["--server", api, "-o", "json"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("run {}", flotilla.display()))?;
    if !out.status.success() {
        bail!(
            "flotilla {} against {api}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("flotilla {} printed no JSON", args.join(" ")))
}

/// `(node, shards, apps)` per node from `flotilla shard list -o json`.
pub fn shard_nodes(doc: &Value) -> Vec<(u64, u64, u64)> {
    doc["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    (
                        n["node"].as_u64().unwrap_or(0),
                        n["shards"].as_u64().unwrap_or(0),
                        n["apps"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Largest over mean of `values` (1.0 when empty or all zero).
pub fn max_over_mean(values: &[u64]) -> f64 {
    let sum: u64 = values.iter().sum();
    if values.is_empty() || sum == 0 {
        return 1.0;
    }
    let mean = sum as f64 / values.len() as f64;
    values.iter().copied().max().unwrap_or(0) as f64 / mean
}

/// Write `doc` as pretty JSON to `path`.
pub fn write_json(path: &Path, doc: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_over_mean_of_even_and_uneven_loads() {
        assert_eq!(max_over_mean(&[10, 10, 10]), 1.0);
        assert!((max_over_mean(&[5, 10, 15]) - 1.5).abs() < 1e-9);
        assert_eq!(max_over_mean(&[]), 1.0);
    }

    #[test]
    fn reads_this_process_from_proc() {
        let (rss, _ticks) = read_proc(std::process::id()).expect("own /proc entry");
        assert!(rss > 0);
    }

    #[test]
    fn a_table_aligns_figures_values_and_targets() {
        let rows = [
            (
                "rss_mb (max node)".to_string(),
                "97.5".to_string(),
                "<= 150 at 10k apps".to_string(),
            ),
            (
                "cpu_percent".to_string(),
                "12.25".to_string(),
                String::new(),
            ),
        ];
        let t = format_table("steady: 6 apps", &rows);
        assert_eq!(
            t,
            "steady: 6 apps\n  FIGURE             VALUE  TARGET\n  rss_mb (max node)   97.5  <= 150 at 10k apps\n  cpu_percent        12.25\n"
        );
    }

    #[tokio::test]
    async fn the_sampler_sees_cpu_used_and_mean_memory() {
        let me = std::process::id();
        let sampler = ProcSampler::start(vec![(1, me)]);
        // Use some CPU time, bounded in count, until the sampler's ticks move.
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let s = sampler.finish()[&1];
        assert!(s.samples >= 2, "{s:?}");
        assert!(s.cpu_ticks_used() > 0, "{s:?}");
        assert!(
            s.mean_rss_kb() > 0.0 && s.mean_rss_kb() <= s.peak_rss_kb as f64,
            "{s:?}"
        );
    }

    #[test]
    fn shard_nodes_parses_the_cli_document() {
        let doc = json!({"nodes": [{"node": 1, "shards": 4, "apps": 7},
                                    {"node": 2, "shards": 3, "apps": 5}]});
        assert_eq!(shard_nodes(&doc), vec![(1, 4, 7), (2, 3, 5)]);
    }
}
