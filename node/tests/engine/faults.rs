//! Injected faults: 500s and 429s retried, a cluster going offline and coming back.
use crate::env::{cm, docs, get, start, Sync};
use flotilla_loadtest::simcluster::FaultConfig;
use flotilla_node::clusters::ConnectionStatus;
use flotilla_node::sync::executor::{SyncContext, CANCELLED};
use flotilla_node::sync::options::Retry;
use flotilla_node::sync::result::OperationPhase;
use std::time::Duration;

/// A sync context on the test cluster: 5 s steps, 50 ms polls, no retry, no cancellation and
/// no write gate. Tests set what they exercise with struct update syntax.
fn context<'a>(
    env: &'a crate::env::Env,
    custom: &'a flotilla_node::health::lua::Customizations,
    app: &'a str,
) -> SyncContext<'a> {
    SyncContext {
        cluster: &env.cluster,
        app,
        namespace: "default",
        tracking: Default::default(),
        customizations: custom,
        dry_run: false,
        create_namespace: false,
        namespace_metadata: None,
        revision: "r",
        step_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        retry: None,
        ignore: &[],
        cancel: None,
        gate: None,
    }
}

/// Poll `cond` until it holds; panics after a generous deadline.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sync_retries_after_injected_500s() {
    let env = start().await;
    env.cluster.kinds().await.expect("discovery");
    env.sim.set_faults(FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    });
    tracing::info!("without retry the operation fails");
    let s = Sync::new("r500");
    let desired = docs(&cm("flaky", "1"));
    let ctx = context(&env, &s.custom, "r500");
    let err = flotilla_node::sync::executor::sync_app(&ctx, &desired, &s.request, &s.diff).await;
    assert!(err.is_err(), "listing live state fails under 500s");

    tracing::info!("with retry, the operation succeeds once the errors stop");
    env.sim.set_faults(FaultConfig::default());
    let plan = flotilla_node::sync::plan::plan(&flotilla_node::sync::plan::PlanInput {
        desired: &desired,
        ..Default::default()
    })
    .expect("plan");
    env.sim.set_faults(FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    });
    let retry = Retry {
        limit: 100,
        duration: Duration::from_millis(100),
        factor: 1.0,
        max_duration: Duration::from_millis(100),
    };
    let ctx = SyncContext {
        retry: Some(retry),
        ..ctx
    };
    let sim = &env.sim;
    let before = sim.fault_counts().errors;
    let (op, ()) = tokio::join!(flotilla_node::sync::executor::execute(&plan, &ctx), async {
        // Heal the cluster once the first attempt has met a 500 (the count is cumulative).
        wait_until("an injected 500", || sim.fault_counts().errors > before).await;
        sim.set_faults(FaultConfig::default());
    });
    assert_eq!(op.phase, OperationPhase::Succeeded, "{op:#?}");
    assert!(op.attempts > 1, "{op:#?}");
    assert!(get(&env, "v1", "ConfigMap", "default", "flaky")
        .await
        .is_some());
}

#[tokio::test]
async fn throttling_429_is_waited_out() {
    let env = start().await;
    env.cluster.kinds().await.expect("discovery");
    env.sim.set_faults(FaultConfig {
        throttle_rate: 1.0,
        retry_after_seconds: 1,
        ..Default::default()
    });
    let mut s = Sync::new("r429");
    s.retry = Some(Retry {
        limit: 50,
        duration: Duration::from_millis(100),
        factor: 1.0,
        max_duration: Duration::from_millis(100),
    });
    let desired = docs(&cm("throttled", "1"));
    let sim = &env.sim;
    let (op, ()) = tokio::join!(s.run(&env, &desired), async {
        // Lift the throttling once it has been met.
        wait_until("an injected 429", || sim.fault_counts().throttled >= 1).await;
        sim.set_faults(FaultConfig::default());
    });
    assert!(op.succeeded(), "{op:#?}");
    assert!(env.sim.fault_counts().throttled >= 1);
    assert!(get(&env, "v1", "ConfigMap", "default", "throttled")
        .await
        .is_some());
}

#[tokio::test]
async fn cluster_offline_then_back() {
    let env = start().await;
    let desired = docs(&cm("o", "1"));
    let s = Sync::new("off");
    assert!(s.run(&env, &desired).await.succeeded());
    assert_eq!(env.cluster.status(), ConnectionStatus::Connected);
    env.sim.set_offline(true);
    let r = flotilla_node::live::list_managed(&env.cluster, "off", Default::default(), None).await;
    assert!(r.is_err());
    assert!(
        matches!(env.cluster.status(), ConnectionStatus::Failed(m) if !m.is_empty()),
        "{:?}",
        env.cluster.status()
    );
    env.sim.set_offline(false);
    assert!(s.compare(&env, &desired).await.in_sync());
    assert_eq!(env.cluster.status(), ConnectionStatus::Connected);
}

#[tokio::test]
async fn shutdown_cancels_health_waits_and_retry_backoff() {
    let env = start().await;
    env.cluster.kinds().await.expect("discovery");
    let token = tokio_util::sync::CancellationToken::new();

    tracing::info!("a resource that stays Progressing: the health wait ends on cancel");
    let mut s = Sync::new("cancelwait");
    s.custom.insert(
        "",
        "ConfigMap",
        "hs = {}\nhs.status = 'Progressing'\nhs.message = 'never ready'\nreturn hs",
    );
    s.step_timeout = Duration::from_secs(600);
    s.cancel = Some(token.clone());
    let desired = docs(&cm("forever", "1"));
    let run = async {
        tokio::join!(s.run(&env, &desired), async {
            loop {
                if get(&env, "v1", "ConfigMap", "default", "forever")
                    .await
                    .is_some()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            token.cancel();
        })
    };
    let (op, ()) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the cancelled health wait ends");
    assert_eq!(op.phase, OperationPhase::Failed, "{op:#?}");
    assert!(op.message.contains(CANCELLED), "{op:#?}");

    tracing::info!("a failing sync with a long backoff: the backoff ends on cancel");
    let token = tokio_util::sync::CancellationToken::new();
    let plan = flotilla_node::sync::plan::plan(&flotilla_node::sync::plan::PlanInput {
        desired: &docs(&cm("backoff", "1")),
        ..Default::default()
    })
    .expect("plan");
    let custom = flotilla_node::health::lua::Customizations::none();
    let ctx = SyncContext {
        retry: Some(Retry {
            limit: 100,
            duration: Duration::from_secs(600),
            factor: 1.0,
            max_duration: Duration::from_secs(600),
        }),
        cancel: Some(&token),
        ..context(&env, &custom, "cancelretry")
    };
    let sim = &env.sim;
    let before = sim.fault_counts().errors;
    sim.set_faults(FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    });
    let run = async {
        tokio::join!(flotilla_node::sync::executor::execute(&plan, &ctx), async {
            wait_until("an injected 500", || sim.fault_counts().errors > before).await;
            token.cancel();
        })
    };
    let (op, ()) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the cancelled backoff ends");
    sim.set_faults(FaultConfig::default());
    assert_eq!(op.phase, OperationPhase::Failed, "{op:#?}");
    assert!(op.message.contains(CANCELLED), "{op:#?}");
    assert_eq!(op.attempts, 1, "{op:#?}");
}

#[tokio::test]
async fn a_closed_write_gate_holds_writes_then_gives_up() {
    let env = start().await;
    env.cluster.kinds().await.expect("discovery");
    let custom = flotilla_node::health::lua::Customizations::none();
    use flotilla_node::sync::executor::Gate;
    let gate = std::sync::Mutex::new(Gate::Lapsed);
    let set = |g: Gate| *gate.lock().expect("gate") = g;
    let may_write = || *gate.lock().expect("gate");
    let ctx = |app: &'static str| SyncContext {
        gate: Some(flotilla_node::sync::executor::WriteGate(&may_write)),
        ..context(&env, &custom, app)
    };
    let plan = |yaml: &str| {
        flotilla_node::sync::plan::plan(&flotilla_node::sync::plan::PlanInput {
            desired: &docs(yaml),
            ..Default::default()
        })
        .expect("plan")
    };

    tracing::info!("closed, then opened: the write waits, then happens");
    let held = plan(&cm("held", "1"));
    let held_ctx = ctx("held");
    let run = async {
        tokio::join!(
            flotilla_node::sync::executor::execute(&held, &held_ctx),
            async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                let written = get(&env, "v1", "ConfigMap", "default", "held").await;
                set(Gate::Open);
                written
            }
        )
    };
    let (op, before_open) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the held sync ends");
    assert!(before_open.is_none(), "written through a closed gate");
    assert_eq!(op.phase, OperationPhase::Succeeded, "{op:#?}");
    assert!(get(&env, "v1", "ConfigMap", "default", "held")
        .await
        .is_some());

    tracing::info!("kept closed: the sync gives up after the wait and writes nothing");
    set(Gate::Lapsed);
    let refused = plan(&cm("refused", "1"));
    let op = tokio::time::timeout(
        Duration::from_secs(30),
        flotilla_node::sync::executor::execute(&refused, &ctx("refused")),
    )
    .await
    .expect("the refused sync ends");
    assert_eq!(op.phase, OperationPhase::Failed, "{op:#?}");
    assert_eq!(op.message, flotilla_node::sync::executor::LEASE_LAPSED);
    assert!(get(&env, "v1", "ConfigMap", "default", "refused")
        .await
        .is_none());

    tracing::info!("moved to another node: the sync stops at once and writes nothing");
    set(Gate::Moved);
    let moved = plan(&cm("moved", "1"));
    let op = tokio::time::timeout(
        Duration::from_secs(30),
        flotilla_node::sync::executor::execute(&moved, &ctx("moved")),
    )
    .await
    .expect("the moved sync ends");
    assert_eq!(op.phase, OperationPhase::Failed, "{op:#?}");
    // Not LEASE_LAPSED: the sync did not wait for a lease that will not come back.
    assert_eq!(op.message, CANCELLED);
    assert!(get(&env, "v1", "ConfigMap", "default", "moved")
        .await
        .is_none());
}
