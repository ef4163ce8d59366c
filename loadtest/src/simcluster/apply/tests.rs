use super::*;

fn deploy(replicas: i64, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}})
}

#[test]
fn fieldset_encodes_keyed_lists_and_round_trips() {
    let f = fields_of(&deploy(1, "nginx"), Lists::Builtin, false);
    let j = f.to_json();
    let c = &j["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert!(c["."].is_object() && c["f:image"].is_object());
    assert!(c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["."].is_object());
    assert!(j["f:metadata"]["f:name"].is_null());
    assert_eq!(FieldSet::from_json(&j), f);
}

#[test]
fn apply_conflicts_then_force_moves_ownership() {
    let live = apply(None, &deploy(1, "nginx"), "a", false, Lists::Builtin).unwrap();
    let err = apply(Some(&live), &deploy(3, "nginx"), "b", false, Lists::Builtin).unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
    );
    let same = apply(Some(&live), &deploy(1, "nginx"), "b", false, Lists::Builtin).unwrap();
    assert_eq!(
        read_managed(&same).len(),
        2,
        "same value is shared ownership"
    );
    let forced = apply(Some(&live), &deploy(3, "nginx"), "b", true, Lists::Builtin).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let a = read_managed(&forced)
        .into_iter()
        .find(|e| e.manager == "a")
        .unwrap();
    assert!(!a.fields.contains(&["f:spec".into(), "f:replicas".into()]));
}

#[test]
fn apply_removes_fields_the_manager_dropped() {
    let live = apply(None, &deploy(1, "nginx"), "a", false, Lists::Builtin).unwrap();
    let mut less = deploy(1, "nginx");
    less["metadata"].as_object_mut().unwrap().remove("labels");
    let out = apply(Some(&live), &less, "a", false, Lists::Builtin).unwrap();
    assert!(out["metadata"]
        .get("labels")
        .is_none_or(|l| l.get("app").is_none()));
}

#[test]
fn keyed_lists_merge_across_managers() {
    let live = apply(None, &deploy(1, "nginx"), "a", false, Lists::Builtin).unwrap();
    let side = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}});
    let out = apply(Some(&live), &side, "b", false, Lists::Builtin).unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "sidecar"]);
}

#[test]
fn updates_take_ownership_of_changed_fields() {
    let live = apply(None, &deploy(1, "nginx"), "a", false, Lists::Builtin).unwrap();
    let mut new = live.clone();
    new["spec"]["replicas"] = json!(5);
    record_update(Some(&live), &mut new, "kubectl-scale", Lists::Builtin, "");
    let m = read_managed(&new);
    let upd = m.iter().find(|e| e.manager == "kubectl-scale").unwrap();
    assert_eq!(upd.operation, "Update");
    assert!(upd.fields.contains(&["f:spec".into(), "f:replicas".into()]));
    let err = apply(Some(&new), &deploy(1, "nginx"), "a", false, Lists::Builtin).unwrap_err();
    assert!(
        err.message.contains("\"kubectl-scale\" using apps/v1"),
        "{}",
        err.message
    );
}

#[test]
fn crd_schema_markers_make_keyed_lists_and_unmarked_lists_atomic() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object"}},
        "tags": {"type": "array", "items": {"type": "string"}}}}}});
    let lists = Lists::Schema(&schema);
    let a = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"},
        "spec": {"ports": [{"name": "http", "port": 80}], "tags": ["a"]}});
    let live = apply(None, &a, "a", false, lists).unwrap();
    let b = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"},
        "spec": {"ports": [{"name": "grpc", "port": 9000}]}});
    let out = apply(Some(&live), &b, "b", false, lists).unwrap();
    assert_eq!(
        out["spec"]["ports"].as_array().unwrap().len(),
        2,
        "keyed by name"
    );
    let c = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"}, "spec": {"tags": ["z"]}});
    let err = apply(Some(&out), &c, "c", false, lists).unwrap_err();
    assert!(
        err.message.contains(".spec.tags"),
        "atomic list conflicts whole: {}",
        err.message
    );
}

#[test]
fn dropping_a_keyed_item_removes_it_whole() {
    let mut two = deploy(1, "nginx");
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "busybox"}));
    let live = apply(None, &two, "a", false, Lists::Builtin).unwrap();
    let out = apply(Some(&live), &deploy(1, "nginx"), "a", false, Lists::Builtin).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        deploy(1, "nginx")["spec"]["template"]["spec"]["containers"]
    );
}
