//! The Markdown report of a set of scenario results: `flotilla-loadtest report --in DIR
//! --out FILE.md`.
//!
//! [`load_dir`] reads every `*.json` result in a directory (a file that is not a result is
//! skipped with a reason, never a panic); [`render`] turns the results into Markdown — the
//! machine, per result its command, a table of its figures with the targets
//! ([`targets`]) and whether they were met, its per-node table — plus SVG plots ([`svg`]) of
//! latency distributions and of apps synced over time; [`write_report`] does both and writes
//! the files, the plots next to the Markdown file.

mod render;
pub mod svg;
pub mod targets;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use render::{render, Report};

/// Why no report could be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The input directory could not be listed.
    #[error("cannot read the results directory {dir}: {source}")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No file in the directory was a readable result.
    #[error(
        "no readable *.json result in {dir} ({skipped} file(s) skipped, see the warnings above)"
    )]
    NoResults {
        /// The directory.
        dir: PathBuf,
        /// Files that were skipped.
        skipped: usize,
    },
    /// The output path names no file.
    #[error("the report path {0} names no file (give e.g. report.md)")]
    OutPath(PathBuf),
    /// A report file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One result document read from a file.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file's name, e.g. `steady.json`.
    pub file: String,
    /// The parsed document (a JSON object with a string `scenario`).
    pub doc: Value,
}

impl Document {
    /// The scenario the document is a result of.
    pub fn scenario(&self) -> &str {
        self.doc["scenario"].as_str().unwrap_or("unknown")
    }
}

/// A file that was left out of the report, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub file: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped {}: {}", self.file.display(), self.reason)
    }
}

/// Parse one result document; the error says what is wrong with it.
pub fn parse_document(text: &str) -> Result<Value, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if !doc.is_object() {
        return Err("not a JSON object (a result is one object per file)".into());
    }
    match &doc["scenario"] {
        Value::String(s) if !s.is_empty() => Ok(doc),
        Value::Null => Err("no `scenario` field, so not a flotilla-loadtest result".into()),
        _ => Err("the `scenario` field is not a non-empty string".into()),
    }
}

/// Read every `*.json` file of `dir` (in name order); files that are not results are
/// returned as skipped, with the reason.
pub fn load_dir(dir: &Path) -> Result<(Vec<Document>, Vec<Skipped>), ReportError> {
    let read_dir = |source| ReportError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut docs = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|t| parse_document(&t));
        match parsed {
            Ok(doc) => docs.push(Document {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                doc,
            }),
            Err(reason) => skipped.push(Skipped { file: path, reason }),
        }
    }
    Ok((docs, skipped))
}

/// Read the results in `in_dir`, write the Markdown report to `out` and its plots next to
/// it; returns what was written (its warnings name the skipped files and missing fields).
pub fn write_report(in_dir: &Path, out: &Path) -> Result<Report, ReportError> {
    let (docs, skipped) = load_dir(in_dir)?;
    if docs.is_empty() {
        return Err(ReportError::NoResults {
            dir: in_dir.to_path_buf(),
            skipped: skipped.len(),
        });
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ReportError::OutPath(out.to_path_buf()))?;
    let report = render(&docs, &skipped, &stem);
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|source| ReportError::Write { path, source })
    };
    std::fs::create_dir_all(parent).map_err(|source| ReportError::Write {
        path: parent.to_path_buf(),
        source,
    })?;
    for (name, svg) in &report.plots {
        write(parent.join(name), svg)?;
    }
    write(out.to_path_buf(), &report.markdown)?;
    Ok(report)
}
