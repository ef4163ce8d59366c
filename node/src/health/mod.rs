//! Health assessment of live Kubernetes objects, as Argo CD users know it.
//!
//! [`assess`] gives one object's health: a custom Lua check if one is configured for the
//! object's group and kind ([`lua::Customizations`]), else the built-in assessment for the
//! kinds Argo CD knows ([`builtin`]), else none (the object has no health of its own, like a
//! ConfigMap). [`aggregate`] folds resource healths into an application's: the worst wins.

pub mod builtin;
pub mod lua;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// A health status, with Argo CD's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    /// Working as intended.
    Healthy,
    /// Paused or suspended on purpose.
    Suspended,
    /// Not healthy yet, but still getting there.
    Progressing,
    /// Expected but absent from the cluster.
    Missing,
    /// Failed, or unable to become healthy.
    Degraded,
    /// The assessment itself failed.
    Unknown,
}

impl HealthStatus {
    /// Rank used to pick the worst of several statuses (Argo CD's order).
    fn rank(self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Suspended => 1,
            Self::Progressing => 2,
            Self::Missing => 3,
            Self::Degraded => 4,
            Self::Unknown => 5,
        }
    }

    /// Whether `self` is worse than `other`.
    pub fn is_worse_than(self, other: Self) -> bool {
        self.rank() > other.rank()
    }

    /// Parse a status name as written by Lua scripts and in Argo CD resources.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Healthy" => Self::Healthy,
            "Suspended" => Self::Suspended,
            "Progressing" => Self::Progressing,
            "Missing" => Self::Missing,
            "Degraded" => Self::Degraded,
            "Unknown" => Self::Unknown,
            _ => return None,
        })
    }

    /// The status name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "Healthy",
            Self::Suspended => "Suspended",
            Self::Progressing => "Progressing",
            Self::Missing => "Missing",
            Self::Degraded => "Degraded",
            Self::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object's health: a status and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The status.
    pub status: HealthStatus,
    /// Why, in a sentence; empty when there is nothing to say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Health {
    /// A health with a message.
    pub fn new(status: HealthStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// Healthy, with nothing to say.
    pub fn healthy() -> Self {
        Self::new(HealthStatus::Healthy, "")
    }
}

/// The group and kind of an object, from its `apiVersion` and `kind`.
pub fn group_kind(obj: &Value) -> (String, String) {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = match api_version.split_once('/') {
        Some((g, _)) => g.to_string(),
        None => String::new(),
    };
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    (group, kind)
}

/// One object's health: a custom check first, then the built-in one; `None` when the object
/// has no health of its own.
pub fn assess(obj: &Value, custom: &lua::Customizations) -> Option<Health> {
    let (group, kind) = group_kind(obj);
    if let Some(script) = custom.health_script(&group, &kind) {
        return Some(match script.run(obj) {
            Ok(h) => h,
            Err(e) => Health::new(HealthStatus::Unknown, e.to_string()),
        });
    }
    builtin::assess(&group, &kind, obj)
}

/// An application's health from its resources' healths: the worst one, or Healthy for none.
pub fn aggregate<'a>(healths: impl IntoIterator<Item = &'a Health>) -> HealthStatus {
    healths
        .into_iter()
        .map(|h| h.status)
        .fold(HealthStatus::Healthy, |worst, s| {
            if s.is_worse_than(worst) {
                s
            } else {
                worst
            }
        })
}

#[cfg(test)]
mod tests;
