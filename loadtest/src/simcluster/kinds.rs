//! The resource types simcluster serves: the built-in kinds and CRD-defined kinds.

use serde_json::{json, Value};
use std::sync::{Arc, LazyLock};

/// One servable resource type (a group/version/resource and what it looks like).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// Plural resource name used in paths.
    pub plural: String,
    /// Singular lower-case name.
    pub singular: String,
    /// Kind of the objects.
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the type has a `status` subresource (spec/status split).
    pub has_status: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories (for example `all`).
    pub categories: Vec<String>,
    /// True for kinds defined by a CustomResourceDefinition.
    pub custom: bool,
}

impl ResourceType {
    /// `apiVersion` string of the objects (`v1` or `group/version`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key of the type: group and plural, independent of the version.
    pub fn group_resource(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `plural.group` as used in Kubernetes messages (`deployments.apps`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Verbs the type supports.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    has_status: bool,
    short: &[&str],
    all: bool,
) -> Arc<ResourceType> {
    Arc::new(ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        has_status,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if all { vec!["all".into()] } else { vec![] },
        custom: false,
    })
}

/// The built-in kinds, shared by all clusters.
pub static BUILTIN: LazyLock<Vec<Arc<ResourceType>>> = LazyLock::new(|| {
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            true,
            &["ns"],
            false,
        ),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            false,
            &["cm"],
            false,
        ),
        builtin("", "v1", "secrets", "Secret", true, false, &[], false),
        builtin("", "v1", "services", "Service", true, true, &["svc"], true),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            false,
            &["sa"],
            false,
        ),
        builtin("", "v1", "pods", "Pod", true, true, &["po"], true),
        builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            true,
            &["pvc"],
            false,
        ),
        builtin("", "v1", "events", "Event", true, false, &["ev"], false),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            true,
            &["deploy"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            true,
            &["rs"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            true,
            &["sts"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            true,
            true,
            &["ds"],
            true,
        ),
        builtin("batch", "v1", "jobs", "Job", true, true, &[], true),
        builtin(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            true,
            true,
            &["cj"],
            true,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "ingresses",
            "Ingress",
            true,
            true,
            &["ing"],
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            false,
            &["netpol"],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            false,
            &[],
            false,
        ),
        builtin(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            true,
            &["hpa"],
            true,
        ),
        builtin(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            true,
            &["pdb"],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            true,
            &["crd", "crds"],
            false,
        ),
    ]
});

/// Resource types defined by one CRD object (one per served version).
pub fn types_from_crd(crd: &Value) -> Vec<Arc<ResourceType>> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let (Some(plural), Some(kind)) = (names["plural"].as_str(), names["kind"].as_str()) else {
        return vec![];
    };
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let str_list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = vec![];
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        out.push(Arc::new(ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: singular.clone(),
            kind: kind.into(),
            namespaced,
            has_status: v["subresources"]["status"].is_object(),
            short_names: str_list(&names["shortNames"]),
            categories: str_list(&names["categories"]),
            custom: true,
        }));
    }
    out
}

/// Accepted-names status block a CRD gets when it is established.
pub fn crd_status(crd: &Value, now: &str) -> Value {
    let names = crd["spec"]["names"].clone();
    json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": crd["spec"]["versions"].as_array().into_iter().flatten()
            .filter(|v| v["storage"].as_bool() == Some(true))
            .filter_map(|v| v["name"].as_str()).collect::<Vec<_>>(),
    })
}

/// Keys of a list that merges by key (`listType=map`) in built-in kinds, by field name.
/// `sample` is an item of the list, used to tell container ports from service ports.
pub fn list_map_keys(field: &str, sample: Option<&Value>) -> Option<&'static [&'static str]> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => &["name"],
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                &["containerPort", "protocol"]
            } else {
                &["port", "protocol"]
            }
        }
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        _ => return None,
    })
}

/// The strategic-merge key of a list field in built-in kinds (`patchMergeKey`).
pub fn strategic_merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Whether a primitive list merges as a set in built-in kinds (`finalizers`).
pub fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}
