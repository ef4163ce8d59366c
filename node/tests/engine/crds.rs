//! Custom resources whose CustomResourceDefinition comes in the same sync, dry runs of kinds
//! the cluster does not serve yet (`SkipDryRunOnMissingResource`), and `Validate=false`.
use crate::env::{cm, docs, get, start, Sync};
use flotilla_node::sync::result::{OperationPhase, OperationResult, ResourceResult, ResultCode};

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: crontabs.stable.example.com\nspec:\n  group: stable.example.com\n  names: {kind: CronTab, plural: crontabs, singular: crontab, listKind: CronTabList}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n---\n";
const CR: &str = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: nightly\nspec:\n  cronSpec: \"0 3 * * *\"\n---\n";

fn result<'a>(op: &'a OperationResult, kind: &str) -> &'a ResourceResult {
    op.resources
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} result in {op:#?}"))
}

#[tokio::test]
async fn custom_resources_and_dry_runs_of_kinds_not_yet_served() {
    let env = start().await;

    tracing::info!("dry run of a custom resource without its CRD fails, naming the kind");
    let mut s = Sync::new("crs");
    s.dry_run = true;
    let op = s.run(&env, &docs(CR)).await;
    assert_eq!(op.phase, OperationPhase::Failed, "{op:#?}");
    let r = result(&op, "CronTab");
    assert_eq!(r.status, ResultCode::SyncFailed);
    assert!(
        r.message.contains("stable.example.com/v1 CronTab")
            && r.message.contains("SkipDryRunOnMissingResource"),
        "{}",
        r.message
    );

    tracing::info!("SkipDryRunOnMissingResource=true skips its dry run instead");
    let mut s = Sync::new("crs").options(&["SkipDryRunOnMissingResource=true"]);
    s.dry_run = true;
    let op = s.run(&env, &docs(CR)).await;
    assert_eq!(op.phase, OperationPhase::Succeeded, "{op:#?}");
    let r = result(&op, "CronTab");
    assert!(r.message.contains("dry run skipped"), "{}", r.message);

    tracing::info!("with its CRD in the same sync, the dry run skips it without the option");
    let both = docs(&format!("{CRD}{CR}"));
    let mut s = Sync::new("crs");
    s.dry_run = true;
    let op = s.run(&env, &both).await;
    assert_eq!(op.phase, OperationPhase::Succeeded, "{op:#?}");
    assert!(
        result(&op, "CronTab").message.contains("part of this sync"),
        "{op:#?}"
    );
    assert!(
        get(
            &env,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "",
            "crontabs.stable.example.com"
        )
        .await
        .is_none(),
        "a dry run persists nothing"
    );

    tracing::info!("a real sync creates the CRD, then the custom resource (Validate=false)");
    let s = Sync::new("crs").options(&["Validate=false"]);
    assert!(!s.compare(&env, &both).await.in_sync());
    let op = s.run(&env, &both).await;
    assert_eq!(op.phase, OperationPhase::Succeeded, "{op:#?}");
    let cr = get(
        &env,
        "stable.example.com/v1",
        "CronTab",
        "default",
        "nightly",
    )
    .await
    .expect("custom resource created");
    assert_eq!(cr["spec"]["cronSpec"], "0 3 * * *");
    assert!(s.compare(&env, &both).await.in_sync());
}

#[tokio::test]
async fn a_real_sync_dry_runs_everything_before_the_first_write() {
    let env = start().await;
    tracing::info!("a custom resource without its CRD fails the dry run: nothing is written");
    let other = CR.replace("CronTab", "Unserved");
    let desired = docs(&format!("{}{other}", cm("before-cr", "1")));
    let op = Sync::new("pre").run(&env, &desired).await;
    assert_eq!(op.phase, OperationPhase::Failed, "{op:#?}");
    assert!(op.message.contains("dry run before the sync"), "{op:#?}");
    assert!(
        result(&op, "Unserved")
            .message
            .contains("stable.example.com/v1 Unserved"),
        "{op:#?}"
    );
    assert!(
        get(&env, "v1", "ConfigMap", "default", "before-cr")
            .await
            .is_none(),
        "the ConfigMap was not applied"
    );
}
