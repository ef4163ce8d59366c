//! API discovery of one cluster, cached: which kinds exist, under which resource name, and
//! whether they are namespaced. Looked up by `apiVersion` and `kind`; a kind the cache does
//! not know triggers one refresh (a CRD may have been installed since).

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

/// One kind as the cluster serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// The resource for kube's dynamic API.
    pub resource: ApiResource,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
    /// Whether the kind can be listed and watched.
    pub watchable: bool,
}

/// The kinds of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindIndex {
    /// By `(apiVersion, kind)`.
    by_gvk: BTreeMap<(String, String), Kind>,
    /// By `(group, kind)`, the version the server prefers.
    by_gk: BTreeMap<(String, String), Kind>,
}

fn kind_of(ar: &ApiResource, caps: &ApiCapabilities) -> Kind {
    Kind {
        resource: ar.clone(),
        namespaced: caps.scope == Scope::Namespaced,
        watchable: caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::WATCH),
    }
}

/// Discovery results in use, so that clusters serving the same kinds share one.
static IN_USE: Mutex<Vec<Weak<KindIndex>>> = Mutex::new(Vec::new());

impl KindIndex {
    /// `self`, or an equal index already in use by another cluster. Clusters of one fleet
    /// usually serve the same kinds: a hundred of them then hold one index, not a hundred.
    pub fn shared(self) -> Arc<KindIndex> {
        let mut in_use = IN_USE.lock().unwrap_or_else(|p| p.into_inner());
        in_use.retain(|w| w.strong_count() > 0);
        if let Some(same) = in_use
            .iter()
            .filter_map(Weak::upgrade)
            .find(|k| **k == self)
        {
            return same;
        }
        let fresh = Arc::new(self);
        in_use.push(Arc::downgrade(&fresh));
        fresh
    }

    /// Run discovery against a cluster.
    pub async fn discover(client: kube::Client) -> Result<Self, kube::Error> {
        let discovery = Discovery::new(client).run().await?;
        let mut index = Self::default();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                index
                    .by_gk
                    .insert((ar.group.clone(), ar.kind.clone()), kind_of(&ar, &caps));
            }
            for version in group.versions() {
                for (ar, caps) in group.versioned_resources(version) {
                    index.by_gvk.insert(
                        (ar.api_version.clone(), ar.kind.clone()),
                        kind_of(&ar, &caps),
                    );
                }
            }
        }
        Ok(index)
    }

    /// The kind named by an object's `apiVersion` and `kind`.
    pub fn get(&self, api_version: &str, kind: &str) -> Option<&Kind> {
        self.by_gvk
            .get(&(api_version.to_string(), kind.to_string()))
    }

    /// The server's preferred version of a group and kind.
    pub fn by_group_kind(&self, group: &str, kind: &str) -> Option<&Kind> {
        self.by_gk.get(&(group.to_string(), kind.to_string()))
    }

    /// Every kind that can be listed and watched, in the server's preferred version.
    pub fn watchable(&self) -> impl Iterator<Item = &Kind> {
        self.by_gk.values().filter(|k| k.watchable)
    }

    /// How many kinds are known.
    pub fn len(&self) -> usize {
        self.by_gk.len()
    }

    /// Whether discovery found nothing.
    pub fn is_empty(&self) -> bool {
        self.by_gk.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(kinds: &[&str]) -> KindIndex {
        let mut index = KindIndex::default();
        for kind in kinds {
            let k = Kind {
                resource: ApiResource {
                    group: String::new(),
                    version: "v1".into(),
                    api_version: "v1".into(),
                    kind: kind.to_string(),
                    plural: format!("{}s", kind.to_lowercase()),
                },
                namespaced: true,
                watchable: true,
            };
            index
                .by_gvk
                .insert(("v1".into(), kind.to_string()), k.clone());
            index.by_gk.insert((String::new(), kind.to_string()), k);
        }
        index
    }

    #[test]
    fn clusters_serving_the_same_kinds_share_one_index() {
        let a = index(&["ConfigMap", "Secret"]).shared();
        let b = index(&["ConfigMap", "Secret"]).shared();
        let c = index(&["ConfigMap"]).shared();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.len(), 1);
        // Indexes no cluster holds any more are forgotten.
        drop(c);
        let _d = index(&["Service"]).shared();
        assert_eq!(IN_USE.lock().unwrap().len(), 2);
    }
}
