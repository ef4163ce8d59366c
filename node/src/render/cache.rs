//! The render cache: rendered objects keyed by the hash of an application's inputs.
//!
//! The key covers the Git object ids of everything the app reads (its source path tree,
//! value files, Kustomize bases, Jsonnet libraries, `$ref` files), the render parameters
//! and the app's identity (name, destination namespace) — but not the commit id, so an app
//! whose inputs did not change on a new commit hits the cache. The cache is an LRU bounded
//! by entry count and by bytes (the size of the objects as JSON).
//!
//! Entries are kept packed ([`Packed`]): a node keeps the output of every app it renders,
//! and a parsed object tree takes several times the memory of its deflated text. A hit
//! parses the objects again, which costs microseconds for the few objects of a typical app.
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::Manifest;
use crate::packed::Packed;
use serde_json::Value;

/// Errors of the render cache (none today; kept for the module's error convention).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A limit of zero was configured.
    #[error("render cache limits must be positive")]
    ZeroLimit,
}

/// Limits of the render cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Maximum number of cached apps.
    pub max_entries: usize,
    /// Maximum total size in bytes (JSON size of the objects).
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 512 << 20,
        }
    }
}

/// A render cache key: SHA-256 of the app's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputKey(pub [u8; 32]);

impl InputKey {
    /// Hash the canonical description of the inputs.
    pub fn of(description: &[u8]) -> Self {
        Self(Sha256::digest(description).into())
    }
    /// Hex form.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

struct Entry {
    /// The objects, as one packed JSON array.
    objects: Packed,
    bytes: usize,
}

struct Inner {
    lru: LruCache<InputKey, Entry>,
    bytes: usize,
}

/// A bounded LRU of rendered output.
pub struct RenderCache {
    inner: Mutex<Inner>,
    limits: CacheLimits,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for RenderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderCache")
            .field("limits", &self.limits)
            .field("len", &self.len())
            .finish()
    }
}

impl RenderCache {
    /// Create an empty cache.
    pub fn new(limits: CacheLimits) -> Result<Self, CacheError> {
        let cap = NonZeroUsize::new(limits.max_entries).ok_or(CacheError::ZeroLimit)?;
        if limits.max_bytes == 0 {
            return Err(CacheError::ZeroLimit);
        }
        Ok(Self {
            inner: Mutex::new(Inner {
                lru: LruCache::new(cap),
                bytes: 0,
            }),
            limits,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached output for a key.
    pub fn get(&self, key: &InputKey) -> Option<Arc<Vec<Manifest>>> {
        let packed = self.lock().lru.get(key).map(|e| e.objects.clone());
        let found = packed
            .and_then(|p| p.decode::<Vec<Value>>())
            .map(|objects| {
                Arc::new(
                    objects
                        .into_iter()
                        .map(|object| Manifest { object })
                        .collect(),
                )
            });
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Store output; evicts least recently used entries to stay within the limits. Output
    /// larger than the whole byte budget is not cached.
    pub fn insert(&self, key: InputKey, manifests: Arc<Vec<Manifest>>) {
        let objects: Vec<&Value> = manifests.iter().map(|m| &m.object).collect();
        // Serializing `Value`s cannot fail.
        let text = serde_json::to_vec(&objects).unwrap_or_default();
        let bytes = text.len() + 64;
        if bytes > self.limits.max_bytes {
            return;
        }
        let objects = Packed::of_json(&text);
        let mut inner = self.lock();
        if let Some(old) = inner.lru.pop(&key) {
            inner.bytes -= old.bytes;
        }
        while inner.bytes + bytes > self.limits.max_bytes {
            match inner.lru.pop_lru() {
                Some((_, e)) => inner.bytes -= e.bytes,
                None => break,
            }
        }
        if let Some((_, e)) = inner.lru.push(key, Entry { objects, bytes }) {
            inner.bytes -= e.bytes;
        }
        inner.bytes += bytes;
    }

    /// Number of cached apps.
    pub fn len(&self) -> usize {
        self.lock().lru.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total size of cached output in bytes.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(n: usize) -> Arc<Vec<Manifest>> {
        Arc::new(vec![Manifest {
            object: serde_json::json!({"kind": "ConfigMap", "data": {"x": "y".repeat(n)}}),
        }])
    }

    #[test]
    fn a_hit_returns_the_objects_inserted() {
        let c = RenderCache::new(CacheLimits::default()).expect("limits");
        let m = Arc::new(vec![
            Manifest {
                object: serde_json::json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}),
            },
            Manifest {
                object: serde_json::json!({"kind": "Service", "spec": {"ports": [{"port": 80}]}}),
            },
        ]);
        c.insert(InputKey::of(b"a"), m.clone());
        assert_eq!(c.get(&InputKey::of(b"a")), Some(m));
        assert_eq!(c.stats(), (1, 0));
    }

    #[test]
    fn evicts_by_entries_and_bytes() {
        let c = RenderCache::new(CacheLimits {
            max_entries: 2,
            max_bytes: 1000,
        })
        .expect("limits");
        let k = |i: u8| InputKey::of(&[i]);
        c.insert(k(1), out(10));
        c.insert(k(2), out(10));
        assert!(c.get(&k(1)).is_some()); // 1 is now most recent
        c.insert(k(3), out(10));
        assert!(c.get(&k(2)).is_none(), "least recently used evicted");
        assert!(c.get(&k(1)).is_some() && c.get(&k(3)).is_some());
        c.insert(k(4), out(850));
        assert!(c.bytes() <= 1000);
        assert!(c.get(&k(4)).is_some());
        assert_eq!(c.len(), 1, "byte budget forces older entries out");
        c.insert(k(5), out(5000));
        assert!(
            c.get(&k(5)).is_none(),
            "larger than the budget is not cached"
        );
        assert!(RenderCache::new(CacheLimits {
            max_entries: 0,
            max_bytes: 1
        })
        .is_err());
    }
}
