use super::*;
use serde_json::json;

const KUBECTL_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn accept_header_picks_the_first_answerable_alternative() {
    let r = requested(KUBECTL_ACCEPT, &q(&[])).expect("valid");
    assert_eq!(
        r,
        Some(TableRequest {
            version: "v1",
            include: Include::Metadata
        })
    );
    let beta = requested(
        "application/json; as=Table; v=v1beta1; g=meta.k8s.io",
        &q(&[("includeObject", "Object")]),
    )
    .expect("valid");
    assert_eq!(
        beta,
        Some(TableRequest {
            version: "v1beta1",
            include: Include::Object
        })
    );
    // Plain JSON first, other `as=` kinds, no header: the plain answer.
    assert_eq!(
        requested(
            "application/json,application/json;as=Table;v=v1;g=meta.k8s.io",
            &q(&[])
        )
        .expect("valid"),
        None
    );
    assert_eq!(
        requested(
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            &q(&[])
        )
        .expect("valid"),
        None
    );
    assert_eq!(requested("", &q(&[])).expect("valid"), None);
    assert_eq!(
        requested("application/json;as=Table;v=v2;g=meta.k8s.io", &q(&[])).expect("valid"),
        None
    );
    let bad = requested(KUBECTL_ACCEPT, &q(&[("includeObject", "All")])).unwrap_err();
    assert_eq!(bad.code, 400);
}

#[test]
fn human_duration_matches_kubernetes_ages() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (26, "26s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 12 * 60, "3h12m"),
        (8 * 3600 + 59, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86_400 + 5 * 3600, "3d5h"),
        (8 * 86_400, "8d"),
        (729 * 86_400, "729d"),
        (730 * 86_400, "2y"),
        (731 * 86_400, "2y1d"),
        (9 * 365 * 86_400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(secs), want, "{secs}s");
    }
}

#[test]
fn timestamps_parse_with_fractions_and_offsets() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("2026-11-22T03:04:05Z"), Some(1_795_316_645));
    assert_eq!(
        parse_rfc3339("2026-11-22T04:04:05.123456+01:00"),
        Some(1_795_316_645)
    );
    assert_eq!(
        parse_rfc3339(&crate::simcluster::meta::rfc3339(1_700_000_000)),
        Some(1_700_000_000)
    );
    assert_eq!(parse_rfc3339("yesterday"), None);
    assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
}

#[test]
fn simple_json_paths_resolve() {
    let obj = json!({"status": {"sync": {"status": "Synced"},
        "conditions": [{"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}],
        "images": ["a:1", "b:2"]},
        "metadata": {"labels": {"app.kubernetes.io/name": "web"}}});
    let get = |p: &str| resolve(&obj, &parse_path(p).expect("parses")).cloned();
    assert_eq!(get(".status.sync.status"), Some(json!("Synced")));
    assert_eq!(get("{.status.sync.status}"), Some(json!("Synced")));
    assert_eq!(get(".status.images[1]"), Some(json!("b:2")));
    assert_eq!(get(".status.images[*]"), Some(json!("a:1")));
    assert_eq!(get(".status.conditions[1].type"), Some(json!("Ready")));
    assert_eq!(
        get(r#".status.conditions[?(@.type=="Ready")].status"#),
        Some(json!("True"))
    );
    assert_eq!(
        get(".metadata.labels['app.kubernetes.io/name']"),
        Some(json!("web"))
    );
    assert_eq!(get(".status.health.status"), None);
    assert_eq!(get(".status.images[5]"), None);
    assert_eq!(parse_path(".a..b"), None);
    assert_eq!(parse_path(".a[?(@.x>1)]"), None);
}

#[test]
fn cells_follow_the_column_type() {
    assert_eq!(typed_cell("string", &json!("x"), 0), json!("x"));
    assert_eq!(typed_cell("string", &json!(3), 0), json!("3"));
    assert_eq!(typed_cell("integer", &json!(3.7), 0), json!(3));
    assert_eq!(typed_cell("integer", &json!("3"), 0), Value::Null);
    assert_eq!(typed_cell("number", &json!(2), 0), json!(2.0));
    assert_eq!(typed_cell("boolean", &json!(true), 0), json!(true));
    assert_eq!(
        typed_cell("date", &json!("1970-01-01T00:00:00Z"), 300),
        json!("5m")
    );
    assert_eq!(typed_cell("date", &json!("soon"), 300), json!("<invalid>"));
}

#[test]
fn crd_printer_columns_replace_age_and_default_to_it() {
    let mut store = Store::with_history(16);
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size", "priority": 1, "description": "how big"}]},
                {"name": "v2", "served": true, "storage": false}]}});
    store.put(
        (
            "apiextensions.k8s.io/customresourcedefinitions".into(),
            String::new(),
            "things.example.com".into(),
        ),
        crd.clone(),
        crate::simcluster::store::EventType::Added,
    );
    let types = crate::simcluster::kinds::types_from_crd(&crd);
    let req = TableRequest {
        version: "v1",
        include: Include::None,
    };
    let obj = json!({"metadata": {"name": "t1", "namespace": "default", "resourceVersion": "7",
        "creationTimestamp": crate::simcluster::meta::now_rfc3339()}, "spec": {"size": 4}});
    let v1 = TableSpec::for_type(&store, &types[0]).render_one(req, &types[0], &obj);
    let names: Vec<&str> = v1["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["Name", "Phase", "Size"]);
    assert_eq!(v1["columnDefinitions"][2]["priority"], 1);
    assert_eq!(v1["columnDefinitions"][2]["description"], "how big");
    assert_eq!(v1["rows"][0]["cells"], json!(["t1", null, 4]));
    assert!(v1["rows"][0].get("object").is_none());
    assert_eq!(v1["metadata"]["resourceVersion"], "7");
    let v2 = TableSpec::for_type(&store, &types[1]).render_one(req, &types[1], &obj);
    assert_eq!(v2["columnDefinitions"][1]["name"], "Age");
    assert_eq!(v2["columnDefinitions"][1]["type"], "date");
    let age = v2["rows"][0]["cells"][1].as_str().expect("age");
    assert!(age.ends_with('s'), "fresh object's age: {age}");
}
