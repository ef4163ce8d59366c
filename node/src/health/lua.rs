//! Custom health checks in Lua, compatible with Argo CD's.
//!
//! Scripts come from an `argocd-cm` ConfigMap (`resource.customizations.health.<group>_<kind>`
//! keys, or the older `resource.customizations` block keyed by `<group>/<kind>`) or from a
//! directory laid out as `<group>/<kind>/health.lua`, where `_` stands for any run of
//! characters in a group or kind name (`_.crossplane.io/_/health.lua`). A script sees the
//! object as the global `obj` and returns a table `{status = ..., message = ...}`.
//!
//! Scripts run in a fresh Lua 5.1 state with only the `base`, `table`, `string` and `math`
//! libraries (no files, no processes, no modules), a memory cap and an instruction-count
//! time limit, so a script that errors or loops gives a clear Unknown health instead of a hang.

use super::{Health, HealthStatus};
use mlua::{HookTriggers, Lua, LuaOptions, LuaSerdeExt, StdLib, Value as LuaValue, VmState};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a health script may run.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(500);
/// How much memory a health script may use.
pub const DEFAULT_MEMORY_LIMIT: usize = 32 << 20;

/// Errors loading or running custom health checks.
#[derive(Debug, thiserror::Error)]
pub enum LuaHealthError {
    /// A customization file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The argocd-cm file is not a ConfigMap we can read.
    #[error("{path}: not a valid argocd-cm ConfigMap: {reason}")]
    ConfigMap {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The script failed to load or run.
    #[error("health script for {target} failed: {reason}")]
    Script {
        /// `group/kind` the script is for.
        target: String,
        /// The Lua error, first line.
        reason: String,
    },
    /// The script ran past its time limit.
    #[error("health script for {target} ran longer than {limit:?} and was stopped")]
    Timeout {
        /// `group/kind` the script is for.
        target: String,
        /// The limit.
        limit: Duration,
    },
    /// The script returned something that is not a health.
    #[error("health script for {target} returned an invalid result: {reason}")]
    BadResult {
        /// `group/kind` the script is for.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One health script and the group/kind pattern it applies to.
#[derive(Debug, Clone)]
pub struct Script {
    target: String,
    source: Arc<str>,
    time_limit: Duration,
    memory_limit: usize,
}

impl Script {
    /// A script for `target` (a `group/kind` pattern, for messages).
    pub fn new(target: impl Into<String>, source: impl Into<Arc<str>>) -> Self {
        Self {
            target: target.into(),
            source: source.into(),
            time_limit: DEFAULT_TIME_LIMIT,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }

    /// The same script with another time limit.
    pub fn with_time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// Run the script on one object.
    pub fn run(&self, obj: &Value) -> Result<Health, LuaHealthError> {
        let script_err = |e: mlua::Error| LuaHealthError::Script {
            target: self.target.clone(),
            reason: first_line(&e.to_string()),
        };
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )
        .map_err(script_err)?;
        lua.set_memory_limit(self.memory_limit)
            .map_err(script_err)?;
        sandbox_globals(&lua).map_err(script_err)?;
        let started = Instant::now();
        let limit = self.time_limit;
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(1000),
            move |_, _| {
                if started.elapsed() > limit {
                    Err(mlua::Error::RuntimeError(TIMEOUT_MARK.into()))
                } else {
                    Ok(VmState::Continue)
                }
            },
        )
        .map_err(script_err)?;
        let value = lua.to_value(obj).map_err(script_err)?;
        lua.globals().set("obj", value).map_err(script_err)?;
        let result: LuaValue = match lua.load(&*self.source).set_name(&self.target).eval() {
            Ok(v) => v,
            Err(e) if e.to_string().contains(TIMEOUT_MARK) => {
                return Err(LuaHealthError::Timeout {
                    target: self.target.clone(),
                    limit,
                });
            }
            Err(e) => return Err(script_err(e)),
        };
        let bad = |reason: String| LuaHealthError::BadResult {
            target: self.target.clone(),
            reason,
        };
        let LuaValue::Table(t) = result else {
            return Err(bad(format!("expected a table, got {}", result.type_name())));
        };
        let status: Option<String> = t.get("status").map_err(|e| bad(e.to_string()))?;
        let message: Option<String> = t.get("message").map_err(|e| bad(e.to_string()))?;
        let status = status.ok_or_else(|| bad("no status field".into()))?;
        let status = HealthStatus::parse(&status)
            .ok_or_else(|| bad(format!("unknown status {status:?}")))?;
        Ok(Health::new(status, message.unwrap_or_default()))
    }
}

const TIMEOUT_MARK: &str = "flotilla: health script time limit reached";

/// Remove the base-library functions that reach outside the sandbox.
fn sandbox_globals(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    for name in [
        "dofile",
        "loadfile",
        "load",
        "loadstring",
        "require",
        "module",
        "collectgarbage",
    ] {
        g.set(name, LuaValue::Nil)?;
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Custom health scripts by group/kind pattern; exact matches win over wildcard ones.
#[derive(Debug, Clone, Default)]
pub struct Customizations {
    /// (group pattern, kind pattern) → script. `*` matches any run of characters.
    scripts: BTreeMap<(String, String), Script>,
}

impl Customizations {
    /// No custom checks.
    pub fn none() -> Self {
        Self::default()
    }

    /// Add a script for a group/kind pattern (`*` is a wildcard); a later add replaces.
    pub fn insert(&mut self, group: &str, kind: &str, source: &str) {
        let target = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{group}/{kind}")
        };
        self.scripts.insert(
            (group.to_string(), kind.to_string()),
            Script::new(target, source),
        );
    }

    /// How many scripts are configured.
    pub fn len(&self) -> usize {
        self.scripts.len()
    }

    /// Whether no script is configured.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
    }

    /// The script for an object's group and kind, if any.
    pub fn health_script(&self, group: &str, kind: &str) -> Option<&Script> {
        if let Some(s) = self.scripts.get(&(group.to_string(), kind.to_string())) {
            return Some(s);
        }
        // The most specific wildcard pattern (longest literal text) wins; ties by order.
        self.scripts
            .iter()
            .filter(|((g, k), _)| glob_match(g, group) && glob_match(k, kind))
            .max_by_key(|((g, k), _)| g.replace('*', "").len() + k.replace('*', "").len())
            .map(|(_, s)| s)
    }

    /// Load scripts from a directory laid out as `<group>/<kind>/health.lua`; `_` in a
    /// directory name is a wildcard, and the group of core kinds is written `_` too only if
    /// it is meant as a wildcard (core kinds live under a directory named after the kind
    /// directly: `<kind>/health.lua`).
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, LuaHealthError> {
        let read = |p: &Path| {
            std::fs::read_dir(p).map_err(|source| LuaHealthError::Read {
                path: p.into(),
                source,
            })
        };
        let mut added = 0;
        let mut entries: Vec<PathBuf> = Vec::new();
        for e in read(dir)? {
            let e = e.map_err(|source| LuaHealthError::Read {
                path: dir.into(),
                source,
            })?;
            entries.push(e.path());
        }
        entries.sort();
        for group_dir in entries.into_iter().filter(|p| p.is_dir()) {
            let group_name = dir_name(&group_dir);
            // Core kinds: `<kind>/health.lua`.
            let direct = group_dir.join("health.lua");
            if direct.is_file() {
                self.insert("", &group_name, &read_file(&direct)?);
                added += 1;
            }
            let mut kinds: Vec<PathBuf> = Vec::new();
            for e in read(&group_dir)? {
                let e = e.map_err(|source| LuaHealthError::Read {
                    path: group_dir.clone(),
                    source,
                })?;
                kinds.push(e.path());
            }
            kinds.sort();
            for kind_dir in kinds.into_iter().filter(|p| p.is_dir()) {
                let script = kind_dir.join("health.lua");
                if script.is_file() {
                    let group = wildcard(&group_name);
                    let kind = wildcard(&dir_name(&kind_dir));
                    self.insert(&group, &kind, &read_file(&script)?);
                    added += 1;
                }
            }
        }
        Ok(added)
    }

    /// Load scripts from an `argocd-cm` ConfigMap in a YAML file.
    pub fn load_argocd_cm(&mut self, path: &Path) -> Result<usize, LuaHealthError> {
        let text = read_file(path)?;
        let cm_err = |reason: String| LuaHealthError::ConfigMap {
            path: path.into(),
            reason,
        };
        let doc: Value = serde_yaml::from_str(&text).map_err(|e| cm_err(e.to_string()))?;
        if doc.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
            return Err(cm_err("kind is not ConfigMap".into()));
        }
        let Some(data) = doc.get("data").and_then(Value::as_object) else {
            return Ok(0);
        };
        let mut added = 0;
        for (key, value) in data {
            let Some(script) = value.as_str() else {
                return Err(cm_err(format!("data.{key} is not a string")));
            };
            if let Some(gk) = key.strip_prefix("resource.customizations.health.") {
                // `<group>_<kind>`; the kind never contains `_`, so split at the last one.
                let (group, kind) = match gk.rsplit_once('_') {
                    Some((g, k)) => (g, k),
                    None => ("", gk),
                };
                self.insert(group, kind, script);
                added += 1;
            } else if key == "resource.customizations" {
                let block: BTreeMap<String, Value> = serde_yaml::from_str(script)
                    .map_err(|e| cm_err(format!("data.resource.customizations: {e}")))?;
                for (gk, entry) in block {
                    let Some(lua) = entry.get("health.lua").and_then(Value::as_str) else {
                        continue;
                    };
                    let (group, kind) = match gk.split_once('/') {
                        Some((g, k)) => (g.to_string(), k.to_string()),
                        None => (String::new(), gk.clone()),
                    };
                    self.insert(&group, &kind, lua);
                    added += 1;
                }
            }
        }
        Ok(added)
    }
}

fn read_file(path: &Path) -> Result<String, LuaHealthError> {
    std::fs::read_to_string(path).map_err(|source| LuaHealthError::Read {
        path: path.into(),
        source,
    })
}

fn dir_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Directory names write the wildcard `*` as `_`.
fn wildcard(name: &str) -> String {
    name.replace('_', "*")
}

/// Match `text` against `pattern` where `*` matches any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod glob_tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*.crossplane.io", "aws.crossplane.io"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "Anything"));
        assert!(!glob_match("*.crossplane.io", "crossplane.io.evil"));
        assert!(glob_match("cert-manager.io", "cert-manager.io"));
        assert!(!glob_match("cert-manager.io", "cert-manager.iox"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
    }
}
