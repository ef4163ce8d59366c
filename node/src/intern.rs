//! Shared copies of the strings that many apps repeat: repository URLs, refs, project names.
//!
//! Thousands of apps usually name a handful of repositories, refs and projects. The indexes
//! that keep a few such strings per app for as long as the app exists hold one shared copy of
//! each through [`intern`] instead of one allocation per app. Strings that nothing uses any
//! more are dropped from the table whenever it has doubled since it was last swept.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

/// Below this many strings the table is never swept.
const MIN_SWEEP: usize = 1024;

struct Table {
    strings: HashSet<Arc<str>>,
    /// Sweep when the table reaches this size.
    sweep_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        strings: HashSet::new(),
        sweep_at: MIN_SWEEP,
    })
});

/// The shared copy of `s`.
pub fn intern(s: &str) -> Arc<str> {
    let mut table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(shared) = table.strings.get(s) {
        return shared.clone();
    }
    if table.strings.len() >= table.sweep_at {
        // Held only by the table: unused.
        table.strings.retain(|t| Arc::strong_count(t) > 1);
        table.sweep_at = (table.strings.len() * 2).max(MIN_SWEEP);
    }
    let shared: Arc<str> = Arc::from(s);
    table.strings.insert(shared.clone());
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let a = intern("https://git.example/intern-test-a.git");
        let b = intern(&String::from("https://git.example/intern-test-a.git"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_ne!(intern("https://git.example/intern-test-b.git"), a);
    }

    #[test]
    fn unused_strings_are_swept_as_the_table_grows() {
        let kept = intern("intern-test-kept");
        for i in 0..3 * MIN_SWEEP {
            intern(&format!("intern-test-dropped-{i}"));
        }
        let table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
        assert!(table.strings.contains("intern-test-kept"));
        assert!(
            table.strings.len() < 2 * MIN_SWEEP + 64,
            "{} strings kept",
            table.strings.len()
        );
        drop(table);
        assert_eq!(&*kept, "intern-test-kept");
    }
}
