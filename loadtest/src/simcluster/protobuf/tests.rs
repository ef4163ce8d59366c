use super::*;
use serde_json::json;

// A minimal protobuf writer, so the tests spell out the wire bytes they feed in.

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn ld(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    varint(u64::from(number) << 3 | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A string field.
fn s(number: u32, v: &str) -> Vec<u8> {
    ld(number, v.as_bytes())
}

/// A varint field.
fn v(number: u32, value: u64) -> Vec<u8> {
    let mut out = vec![];
    varint(u64::from(number) << 3, &mut out);
    varint(value, &mut out);
    out
}

/// One map entry field.
fn entry(number: u32, key: &str, value: &[u8]) -> Vec<u8> {
    ld(number, &[s(1, key), ld(2, value)].concat())
}

/// The whole body: magic + `runtime.Unknown`.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [s(1, api_version), s(2, kind)].concat();
    [
        b"k8s\0".to_vec(),
        ld(1, &type_meta),
        ld(2, raw),
        s(3, ""),
        s(4, ""),
    ]
    .concat()
}

/// ObjectMeta as Go's marshaller writes it: every string field, even empty ones, and a
/// zero creationTimestamp.
fn meta(name: &str, namespace: &str, extra: &[Vec<u8>]) -> Vec<u8> {
    let mut m = [
        s(1, name),
        s(2, ""),
        s(3, namespace),
        s(4, ""),
        s(5, ""),
        s(6, ""),
        v(7, 0),
        ld(8, &[v(1, 0), v(2, 0)].concat()),
    ]
    .concat();
    for e in extra {
        m.extend_from_slice(e);
    }
    ld(1, &m)
}

#[test]
fn secret_with_binary_data_labels_and_type() {
    let raw = [
        meta(
            "creds",
            "team-a",
            &[
                entry(11, "app", b"web"),
                entry(11, "tier", b"db"),
                entry(12, "note", b"hello"),
            ],
        ),
        entry(2, "password", b"s3cr\xffet"),
        entry(2, "user", b"admin"),
        s(3, "Opaque"),
        v(5, 1),
    ]
    .concat();
    let obj = decode(&envelope("v1", "Secret", &raw)).expect("decodes");
    assert_eq!(
        obj,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "creds",
                "namespace": "team-a",
                "labels": {"app": "web", "tier": "db"},
                "annotations": {"note": "hello"},
            },
            "data": {"password": base64(b"s3cr\xffet"), "user": "YWRtaW4="},
            "type": "Opaque",
            "immutable": true,
        })
    );
    let keys: Vec<&String> = obj.as_object().expect("object").keys().collect();
    assert_eq!(&keys[..2], ["apiVersion", "kind"]);
}

#[test]
fn configmap_namespace_and_service_account() {
    let cm = [
        meta("settings", "", &[]),
        entry(2, "mode", b"fast"),
        entry(3, "blob", &[0, 1, 2]),
    ]
    .concat();
    assert_eq!(
        decode(&envelope("v1", "ConfigMap", &cm)).expect("configmap"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
               "data": {"mode": "fast"}, "binaryData": {"blob": "AAEC"}})
    );

    let ns = [meta("prod", "", &[]), ld(2, &[]), ld(3, &s(1, ""))].concat();
    assert_eq!(
        decode(&envelope("v1", "Namespace", &ns)).expect("namespace"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"},
               "spec": {}, "status": {}})
    );

    let sa = [
        meta("robot", "ci", &[s(14, "example.com/keep")]),
        ld(3, &s(1, "registry")),
        ld(2, &[s(3, "robot-token"), s(1, "Secret")].concat()),
        v(4, 0),
    ]
    .concat();
    assert_eq!(
        decode(&envelope("v1", "ServiceAccount", &sa)).expect("service account"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "robot", "namespace": "ci", "finalizers": ["example.com/keep"]},
               "imagePullSecrets": [{"name": "registry"}],
               "secrets": [{"name": "robot-token", "kind": "Secret"}],
               "automountServiceAccountToken": false})
    );
}

#[test]
fn rbac_kinds() {
    let subject = |kind: &str, group: &str, name: &str, ns: &str| {
        ld(2, &[s(1, kind), s(2, group), s(3, name), s(4, ns)].concat())
    };
    let rb = [
        meta("admins", "team-a", &[]),
        subject("ServiceAccount", "", "deployer", "team-a"),
        subject("User", "rbac.authorization.k8s.io", "alice", ""),
        ld(
            3,
            &[
                s(1, "rbac.authorization.k8s.io"),
                s(2, "ClusterRole"),
                s(3, "admin"),
            ]
            .concat(),
        ),
    ]
    .concat();
    let expected_binding = |kind: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
           "metadata": {"name": "admins", "namespace": "team-a"},
           "subjects": [
               {"kind": "ServiceAccount", "name": "deployer", "namespace": "team-a"},
               {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
           ],
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}})
    };
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        assert_eq!(
            decode(&envelope("rbac.authorization.k8s.io/v1", kind, &rb)).expect(kind),
            expected_binding(kind)
        );
    }

    let rule = ld(
        2,
        &[
            s(1, "get"),
            s(1, "list"),
            s(2, ""),
            s(3, "pods"),
            s(4, "web"),
        ]
        .concat(),
    );
    let url_rule = ld(2, &s(5, "/healthz"));
    let selector = ld(
        1,
        &[
            entry(1, "aggregate", b"true"),
            ld(
                2,
                &[s(1, "tier"), s(2, "In"), s(3, "a"), s(3, "b")].concat(),
            ),
        ]
        .concat(),
    );
    let cr = [meta("reader", "", &[]), rule, url_rule, ld(3, &selector)].concat();
    assert_eq!(
        decode(&envelope(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            &cr
        ))
        .expect("cr"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": [
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]},
            {"verbs": [], "nonResourceURLs": ["/healthz"]},
        ],
        "aggregationRule": {"clusterRoleSelectors": [{
            "matchLabels": {"aggregate": "true"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
        }]}})
    );
    let role = [meta("empty", "ns", &[])].concat();
    assert_eq!(
        decode(&envelope("rbac.authorization.k8s.io/v1", "Role", &role)).expect("role")["rules"],
        json!([])
    );
}

#[test]
fn metadata_times_owners_and_managed_fields() {
    let owner = ld(
        13,
        &[
            s(1, "Deployment"),
            s(3, "web"),
            s(4, "u-1"),
            s(5, "apps/v1"),
            v(6, 1),
        ]
        .concat(),
    );
    let managed = ld(
        17,
        &[
            s(1, "kubectl"),
            s(2, "Update"),
            s(3, "v1"),
            ld(4, &v(1, 1_700_000_000)),
            s(6, "FieldsV1"),
            ld(7, &s(1, r#"{"f:data":{"f:a":{}}}"#)),
        ]
        .concat(),
    );
    let raw = meta(
        "",
        "",
        &[
            s(2, "cm-"),
            v(7, 3),
            ld(9, &v(1, 86_400)),
            v(10, 0),
            owner,
            managed,
        ],
    );
    let obj = decode(&envelope("v1", "ConfigMap", &raw)).expect("decodes");
    assert_eq!(
        obj["metadata"],
        json!({
            "generateName": "cm-",
            "generation": 3,
            "deletionTimestamp": "1970-01-02T00:00:00Z",
            "deletionGracePeriodSeconds": 0,
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "u-1", "apiVersion": "apps/v1", "controller": true}],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                               "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:data": {"f:a": {}}}}],
        })
    );
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let raw = [
        v(99, 7),
        s(98, "later"),
        {
            let mut f = vec![];
            varint(97 << 3 | 1, &mut f);
            f.extend_from_slice(&[1; 8]);
            varint(96 << 3 | 5, &mut f);
            f.extend_from_slice(&[2; 4]);
            f
        },
        meta("x", "", &[v(50, 1)]),
        entry(2, "k", b"v"),
    ]
    .concat();
    let body = [envelope("v1", "ConfigMap", &raw), v(20, 1)].concat();
    assert_eq!(
        decode(&body).expect("decodes"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}})
    );
}

#[test]
fn unsupported_kinds_are_named() {
    let e = decode(&envelope("apps/v1", "Deployment", &meta("web", "", &[]))).unwrap_err();
    assert!(e.is_unsupported_kind());
    let msg = e.to_string();
    assert!(
        msg.contains("\"Deployment\"") && msg.contains("\"apps/v1\"") && msg.contains("Secret"),
        "{msg}"
    );
    let e = decode(b"k8s\0").unwrap_err();
    assert!(e.is_unsupported_kind(), "{e}");
}

#[test]
fn malformed_bodies_say_what_and_where() {
    let good = envelope("v1", "Secret", &meta("a", "", &[]));
    assert_eq!(decode(b"{\"kind\":\"Secret\"}"), Err(ProtoError::NoMagic));

    // Every truncation of a valid body fails cleanly or decodes a prefix; none panics.
    for n in 0..good.len() {
        let _ = decode(&good[..n]);
    }
    let cut = decode(&good[..good.len() - 5]).unwrap_err();
    assert!(
        matches!(&cut, ProtoError::Malformed { what, .. } if what.contains("runs past the end")),
        "{cut}"
    );

    // metadata.name as a varint instead of a string.
    let raw = ld(1, &v(1, 5));
    let e = decode(&envelope("v1", "Secret", &raw)).unwrap_err();
    let at = 4 + ld(1, &[s(1, "v1"), s(2, "Secret")].concat()).len() + 2 + 2;
    assert_eq!(
        e,
        ProtoError::WireType {
            path: "Secret.metadata.name".into(),
            number: 1,
            at,
            expected: "length-delimited (wire type 2)",
            wire: 0,
        }
    );
    assert!(e.to_string().contains("Secret.metadata.name"), "{e}");

    // Invalid UTF-8 in a label value, an overlong varint, a group, field number 0.
    let bad_label = meta("a", "", &[entry(11, "k", b"\xc3\x28")]);
    let e = decode(&envelope("v1", "Secret", &bad_label)).unwrap_err();
    assert!(e.to_string().contains("Secret.metadata.labels"), "{e}");
    assert!(e.to_string().contains("UTF-8"), "{e}");
    let mut overlong = b"k8s\0".to_vec();
    overlong.extend_from_slice(&[
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ]);
    assert!(decode(&overlong)
        .unwrap_err()
        .to_string()
        .contains("varint"));
    let group = envelope("v1", "Secret", &[0x0b]);
    assert!(decode(&group)
        .unwrap_err()
        .to_string()
        .contains("wire type 3"));
    let fixed32_name = envelope("v1", "Secret", &ld(1, &[0x0d, 1, 2, 3, 4]));
    let e = decode(&fixed32_name).unwrap_err();
    assert!(
        matches!(
            e,
            ProtoError::WireType {
                wire: 5,
                number: 1,
                ..
            }
        ),
        "{e}"
    );
    let zero = envelope("v1", "Secret", &[0x02, 0x00]);
    assert!(decode(&zero)
        .unwrap_err()
        .to_string()
        .contains("invalid field number 0"));
    let huge = [b"k8s\0".to_vec(), vec![0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]].concat();
    assert!(decode(&huge).unwrap_err().to_string().contains("runs past"));

    let gzip = [envelope("v1", "Secret", &[]), s(3, "gzip")].concat();
    assert_eq!(decode(&gzip), Err(ProtoError::Encoding("gzip".into())));
    let before_epoch = meta("a", "", &[ld(9, &v(1, u64::MAX))]);
    let e = decode(&envelope("v1", "Secret", &before_epoch)).unwrap_err();
    assert!(e.to_string().contains("before 1970"), "{e}");
}

#[test]
fn deeply_nested_unknown_fields_are_skipped_without_recursion() {
    let mut nested = s(1, "x");
    for _ in 0..1000 {
        nested = ld(50, &nested);
    }
    let raw = [meta("a", "", &[]), nested].concat();
    assert!(decode(&envelope("rbac.authorization.k8s.io/v1", "Role", &raw)).is_ok());
}
