//! The nodes' JSON logs (`flotilla --log-format json node …` with `info` for
//! `flotilla_node::controller::reconcile`): when each sync of an app ran on which node, and
//! whether two syncs of one app ever ran at the same time.
//!
//! [`read_sync_intervals`] collects the `sync started` / `sync finished` pairs of every
//! node's log; [`overlapping_syncs`] finds the syncs that began while another sync of the
//! same app was still running (on any node). A sync whose node was killed before it
//! finished ends at the kill.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The `RUST_LOG` directive that makes a node log its syncs at `info`.
pub const SYNC_LOG_DIRECTIVE: &str = "flotilla_node::controller::reconcile=info";

/// Errors reading the logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A log file could not be read.
    #[error("read the log {path}: {source}")]
    Read {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One sync of one app on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncInterval {
    /// The node that ran it.
    pub node: u64,
    /// The app's key (`namespace/name`).
    pub app: String,
    /// The operation id.
    pub op_id: String,
    /// When it started, Unix milliseconds.
    pub started_ms: i64,
    /// When it finished, Unix milliseconds (`None` when the log has no end for it).
    pub finished_ms: Option<i64>,
}

/// A sync that started while another sync of the same app was running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The sync that was running.
    pub first: SyncInterval,
    /// The sync that started during it.
    pub second: SyncInterval,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = |e: &SyncInterval| e.finished_ms.map_or("open".to_string(), |t| t.to_string());
        write!(
            f,
            "{}: node {} op {} ({}..{}) and node {} op {} ({}..{})",
            self.first.app,
            self.first.node,
            self.first.op_id,
            self.first.started_ms,
            end(&self.first),
            self.second.node,
            self.second.op_id,
            self.second.started_ms,
            end(&self.second)
        )
    }
}

/// The sync intervals of one node's log text, in the order they started.
pub fn parse_sync_lines(node: u64, text: &str) -> Vec<SyncInterval> {
    let mut p = Parser::new(node);
    for line in text.lines() {
        p.line(line);
    }
    p.out
}

/// The sync intervals of every `(node, log file)`; a missing file counts as empty.
pub fn read_sync_intervals(logs: &[(u64, PathBuf)]) -> Result<Vec<SyncInterval>, LogError> {
    let mut out = Vec::new();
    for (node, path) in logs {
        out.extend(read_one(*node, path)?);
    }
    Ok(out)
}

fn read_one(node: u64, path: &Path) -> Result<Vec<SyncInterval>, LogError> {
    let err = |source| LogError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(e)),
    };
    let mut p = Parser::new(node);
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(err)? == 0 {
            break;
        }
        p.line(&String::from_utf8_lossy(&buf));
    }
    Ok(p.out)
}

/// Pairs `sync started` with `sync finished` lines of one node.
struct Parser {
    node: u64,
    out: Vec<SyncInterval>,
    open: HashMap<(String, String), usize>,
}

impl Parser {
    fn new(node: u64) -> Self {
        Self {
            node,
            out: Vec::new(),
            open: HashMap::new(),
        }
    }

    fn line(&mut self, line: &str) {
        let started = line.contains("\"sync started\"");
        if !started && !line.contains("\"sync finished\"") {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            return;
        };
        let Some(at) = v["timestamp"].as_str().and_then(parse_rfc3339_ms) else {
            return;
        };
        let app = v["fields"]["app"].as_str().unwrap_or_default().to_owned();
        let op = v["fields"]["op_id"].as_str().unwrap_or_default().to_owned();
        match v["fields"]["message"].as_str() {
            Some("sync started") => {
                self.open.insert((app.clone(), op.clone()), self.out.len());
                self.out.push(SyncInterval {
                    node: self.node,
                    app,
                    op_id: op,
                    started_ms: at,
                    finished_ms: None,
                });
            }
            Some("sync finished") => {
                if let Some(i) = self.open.remove(&(app, op)) {
                    self.out[i].finished_ms = Some(at);
                }
            }
            _ => {}
        }
    }
}

/// The syncs that started while another sync of the same app was running. A sync without
/// an end in its log ends at its node's first entry in `ended_at` (node, Unix ms) at or
/// after its start (a kill -9 or the final stop), or never. O(n log n) in the intervals.
pub fn overlapping_syncs(intervals: &[SyncInterval], ended_at: &[(u64, i64)]) -> Vec<Overlap> {
    let end = |e: &SyncInterval| {
        e.finished_ms.unwrap_or_else(|| {
            ended_at
                .iter()
                .filter(|(n, at)| *n == e.node && *at >= e.started_ms)
                .map(|(_, at)| *at)
                .min()
                .unwrap_or(i64::MAX)
        })
    };
    let mut by_app: BTreeMap<&str, Vec<(i64, i64, usize)>> = BTreeMap::new();
    for (i, e) in intervals.iter().enumerate() {
        by_app
            .entry(e.app.as_str())
            .or_default()
            .push((e.started_ms, end(e), i));
    }
    let mut bad = Vec::new();
    for list in by_app.values_mut() {
        list.sort_unstable();
        // The interval that ends last among those started so far.
        let mut running: Option<(i64, usize)> = None;
        for &(start, finish, i) in list.iter() {
            if let Some((until, j)) = running {
                if start < until {
                    bad.push(Overlap {
                        first: intervals[j].clone(),
                        second: intervals[i].clone(),
                    });
                }
            }
            if running.is_none_or(|(until, _)| finish > until) {
                running = Some((finish, i));
            }
        }
    }
    bad
}

/// Milliseconds of an RFC 3339 UTC timestamp like `2026-11-22T03:15:06.584343Z`.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// Now in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(msg: &str, at: &str, app: &str, op: &str) -> String {
        format!(
            r#"{{"timestamp":"{at}","level":"INFO","fields":{{"message":"{msg}","app":"{app}","op_id":"{op}"}},"target":"flotilla_node::controller::reconcile"}}"#
        )
    }

    fn iv(node: u64, app: &str, start: i64, end: Option<i64>) -> SyncInterval {
        SyncInterval {
            node,
            app: app.into(),
            op_id: format!("op-{node}-{start}"),
            started_ms: start,
            finished_ms: end,
        }
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T03:15:06.584343Z"),
            Some(1_795_317_306_584)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T03:15:06Z"),
            Some(1_795_317_306_000)
        );
        assert_eq!(parse_rfc3339_ms("2026-13-22T03:15:06Z"), None);
        assert_eq!(parse_rfc3339_ms("not a time"), None);
    }

    #[test]
    fn pairs_started_and_finished_lines_and_skips_others() {
        let text = [
            line("sync started", "1970-01-01T00:00:01Z", "argocd/a", "o1"),
            "plain text line".into(),
            r#"{"timestamp":"1970-01-01T00:00:01Z","fields":{"message":"something else"}}"#.into(),
            line("sync started", "1970-01-01T00:00:02Z", "argocd/b", "o2"),
            line("sync finished", "1970-01-01T00:00:03Z", "argocd/a", "o1"),
        ]
        .join("\n");
        let got = parse_sync_lines(7, &text);
        assert_eq!(
            got,
            vec![
                SyncInterval {
                    node: 7,
                    app: "argocd/a".into(),
                    op_id: "o1".into(),
                    started_ms: 1000,
                    finished_ms: Some(3000)
                },
                SyncInterval {
                    node: 7,
                    app: "argocd/b".into(),
                    op_id: "o2".into(),
                    started_ms: 2000,
                    finished_ms: None
                },
            ]
        );
    }

    #[test]
    fn reads_log_files_and_treats_a_missing_one_as_empty() {
        let dir = std::env::temp_dir().join(format!("flotilla-logs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("node-1.log");
        let text = [
            line("sync started", "1970-01-01T00:00:01Z", "argocd/a", "o1"),
            line("sync finished", "1970-01-01T00:00:02Z", "argocd/a", "o1"),
        ]
        .join("\n");
        std::fs::write(&f, text).expect("write");
        let got = read_sync_intervals(&[(1, f), (2, dir.join("missing.log"))]).expect("read");
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].finished_ms, Some(2000));
    }

    #[test]
    fn back_to_back_syncs_and_other_apps_do_not_overlap() {
        let ivs = vec![
            iv(1, "a", 0, Some(10)),
            iv(2, "a", 10, Some(20)),
            iv(3, "b", 5, Some(15)),
            iv(1, "a", 20, Some(30)),
        ];
        assert!(overlapping_syncs(&ivs, &[]).is_empty());
    }

    #[test]
    fn finds_a_sync_started_while_another_ran() {
        let ivs = vec![
            iv(1, "a", 0, Some(100)),
            iv(2, "a", 10, Some(20)),
            // Contained in the first one too, though not in the second.
            iv(3, "a", 50, Some(60)),
        ];
        let bad = overlapping_syncs(&ivs, &[]);
        assert_eq!(bad.len(), 2);
        assert!(bad.iter().all(|o| o.first.node == 1));
        assert!(bad[0].to_string().contains("node 1"));
    }

    #[test]
    fn a_sync_cut_short_by_a_kill_ends_at_the_kill() {
        let ivs = vec![iv(1, "a", 0, None), iv(2, "a", 100, Some(200))];
        assert!(overlapping_syncs(&ivs, &[(1, 50)]).is_empty());
        // A kill before the sync started does not end it.
        assert_eq!(overlapping_syncs(&ivs, &[(1, -5)]).len(), 1);
        // Without a kill it never ended.
        assert_eq!(overlapping_syncs(&ivs, &[]).len(), 1);
    }
}
