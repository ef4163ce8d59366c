//! The write-back scheduler: coalescing, the per-app throttle, one write per app at a time,
//! and what is remembered of each resource's status.

use std::time::Duration;

use super::*;

const INTERVAL: Duration = Duration::from_secs(1);

fn known(status: &str) -> Known {
    Known::of(&serde_json::from_str(status).expect("a JSON status"))
}

fn take_all(p: &mut Pending) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(app) = p.take_due(INTERVAL) {
        p.in_flight.insert(app.clone());
        out.push(app);
    }
    out
}

#[tokio::test]
async fn marks_coalesce_and_each_app_is_taken_once() {
    let mut p = Pending::default();
    for app in ["a", "b", "a", "c", "b"] {
        p.mark(app, INTERVAL);
    }
    let mut taken = take_all(&mut p);
    taken.sort();
    assert_eq!(taken, ["a", "b", "c"]);
    assert_eq!(p.take_due(INTERVAL), None);
}

#[tokio::test]
async fn an_app_in_flight_is_not_taken_again_until_done_and_then_waits_its_interval() {
    let mut p = Pending::default();
    p.mark("a", INTERVAL);
    assert_eq!(take_all(&mut p), ["a"]);
    // Changed again while being written: not taken twice at once.
    p.mark("a", INTERVAL);
    assert_eq!(take_all(&mut p), Vec::<String>::new());
    p.done("a".into(), Ok(Wrote::Patched(known("{}"))), INTERVAL);
    // Written just now: throttled until the interval has passed.
    assert_eq!(take_all(&mut p), Vec::<String>::new());
    let due = p.next_due().expect("a wake-up for the throttled app");
    assert!(due > Instant::now() && due <= Instant::now() + INTERVAL);
    // Taken again once the interval has passed (polled, with a deadline).
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let taken = take_all(&mut p);
        if !taken.is_empty() {
            break taken;
        }
        assert!(Instant::now() < deadline, "never due again");
        tokio::time::sleep_until(due.min(deadline)).await;
    };
    assert_eq!(again, ["a"]);
    assert!(Instant::now() >= due);
}

#[tokio::test]
async fn what_was_written_is_remembered_and_forgotten_after_an_error() {
    let mut p = Pending::default();
    p.mark("a", INTERVAL);
    p.mark("b", INTERVAL);
    take_all(&mut p);
    p.done(
        "a".into(),
        Ok(Wrote::Patched(known(r#"{"x":1}"#))),
        INTERVAL,
    );
    p.done(
        "b".into(),
        Ok(Wrote::Unchanged(Some(known("{}")))),
        INTERVAL,
    );
    assert_eq!(p.known["a"], known(r#"{"x":1}"#));
    assert_ne!(p.known["a"], known(r#"{"x":2}"#));
    assert!(p.known.contains_key("b"));
    // An unchanged status is no write: `b` may be written again at once.
    p.mark("b", INTERVAL);
    assert_eq!(take_all(&mut p), ["b"]);
    let err = IngestError::Io {
        path: "x".into(),
        source: std::io::Error::other("boom"),
    };
    p.done("b".into(), Err(err), INTERVAL);
    assert!(!p.known.contains_key("b"), "forgotten after an error");
    assert!(p.dirty.contains("b"), "retried after an error");
    p.known.insert("c".into(), known("{}"));
    p.forget("c");
    assert!(!p.known.contains_key("c"));
}
