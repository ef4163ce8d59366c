//! Leader: `Application` and `AppProject` resources of the management cluster mirrored into
//! the store (`PutApp`/`DeleteApp`, `PutProject`/`DeleteProject`).
//!
//! Each kind is watched in every configured namespace. Once every namespace has been listed,
//! the store is reconciled with what exists (so a new leader also deletes what vanished while
//! nobody watched); after that each event changes one record. A record is proposed only when
//! it differs from the store, so status write-back (which changes the object but not its
//! stored form) proposes nothing. Events that arrive within a few milliseconds of each other
//! are handled together and their records proposed at once (a deletion first proposes what
//! is pending).

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use flotilla_raft::{Command, Json};

use super::{
    application_resource, canonical, now_ms, origin, origin_of, project_resource, propose_all,
    stored_value, with_origin, writeback, Ctx, IngestError,
};
use crate::model::{AppProject, Application};
use crate::packed::Packed;
use crate::status::{app_key, stored_app};

/// Which kind a mirror follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    App,
    Project,
}

/// The live objects of one kind, by `(namespace, name)`. An object's content is kept only
/// until it has been handled (packed, [`Packed`], without its status and managed fields):
/// objects seen before every namespace was listed, and those of a list in progress. Once
/// handled, the store holds what ingestion needs, and the name alone is kept.
struct Mirror {
    kind: Kind,
    namespaces: BTreeSet<String>,
    /// Every live object.
    objects: BTreeSet<(String, String)>,
    /// Live objects not handled yet.
    unhandled: BTreeMap<(String, String), Packed>,
    /// Namespaces listed at least once since this mirror started.
    listed: BTreeSet<String>,
    /// Objects of a list in progress, per namespace.
    listing: BTreeMap<String, BTreeMap<String, Packed>>,
}

/// The part of a live object the mirror keeps, packed.
fn kept(mut v: Value) -> Packed {
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
    }
    Packed::of(&v)
}

/// Mirror `Application`s until `cancel` fires.
pub(crate) async fn mirror_apps(ctx: Ctx, client: kube::Client, cancel: CancellationToken) {
    run(ctx, client, Kind::App, cancel).await
}

/// Mirror `AppProject`s until `cancel` fires.
pub(crate) async fn mirror_projects(ctx: Ctx, client: kube::Client, cancel: CancellationToken) {
    run(ctx, client, Kind::Project, cancel).await
}

async fn run(ctx: Ctx, client: kube::Client, kind: Kind, cancel: CancellationToken) {
    let resource = match kind {
        Kind::App => application_resource(),
        Kind::Project => project_resource(),
    };
    // AppProjects live in the control-plane namespace only, as in Argo CD: a project of
    // the same name in an application namespace must not stand in for the real one.
    let namespaces: Vec<String> = match kind {
        Kind::App => ctx.settings.namespaces.clone(),
        Kind::Project => vec![ctx.settings.secrets_namespace.clone()],
    };
    let streams = namespaces.iter().map(|ns| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        let ns = ns.clone();
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |e| (ns.clone(), e))
            .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut mirror = Mirror {
        kind,
        namespaces: namespaces.iter().cloned().collect(),
        objects: BTreeSet::new(),
        unhandled: BTreeMap::new(),
        listed: BTreeSet::new(),
        listing: BTreeMap::new(),
    };
    let mut batch = Vec::new();
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            e = events.next() => e,
        };
        let Some(first) = next else { return };
        // The events that follow within a short window are taken together: a burst of
        // changes becomes a few proposals instead of one per object.
        let mut ready = vec![first];
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while ready.len() < BATCH_EVENTS {
            tokio::select! {
                biased;
                e = events.next() => match e {
                    Some(e) => ready.push(e),
                    None => break,
                },
                _ = &mut window => break,
            }
        }
        for (ns, event) in ready {
            let result = match event {
                Err(e) => {
                    tracing::warn!(namespace = %ns, kind = ?kind, error = %e, "watching the management cluster");
                    Ok(())
                }
                Ok(event) => mirror.handle(&ctx, &client, &ns, event, &mut batch).await,
            };
            if let Err(e) = result {
                tracing::warn!(namespace = %ns, kind = ?kind, error = %e, "ingesting");
            }
        }
        if let Err(e) = propose_all(&ctx.store, std::mem::take(&mut batch)).await {
            tracing::warn!(kind = ?kind, error = %e, "ingesting");
        }
    }
}

/// Events handled before their commands are proposed together, at most.
const BATCH_EVENTS: usize = 512;
/// How long after an event the events that follow are gathered into the same proposal.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(25);

fn object_value(obj: &DynamicObject) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

fn name_of(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Mirror {
    fn ready(&self) -> bool {
        self.listed.len() >= self.namespaces.len()
    }

    async fn handle(
        &mut self,
        ctx: &Ctx,
        client: &kube::Client,
        ns: &str,
        event: Event<DynamicObject>,
        batch: &mut Vec<Command>,
    ) -> Result<(), IngestError> {
        match event {
            Event::Init => {
                self.listing.insert(ns.to_string(), BTreeMap::new());
                Ok(())
            }
            Event::InitApply(obj) => {
                let v = object_value(&obj);
                if let Some(l) = self.listing.get_mut(ns) {
                    l.insert(name_of(&v), kept(v));
                }
                Ok(())
            }
            Event::InitDone => {
                let listed = self.listing.remove(ns).unwrap_or_default();
                self.objects.retain(|(n, _)| n != ns);
                self.unhandled.retain(|(n, _), _| n != ns);
                for (name, v) in listed {
                    self.objects.insert((ns.to_string(), name.clone()));
                    self.unhandled.insert((ns.to_string(), name), v);
                }
                self.listed.insert(ns.to_string());
                if self.ready() {
                    propose_all(&ctx.store, std::mem::take(batch)).await?;
                    self.reconcile_all(ctx, client).await?;
                }
                Ok(())
            }
            Event::Apply(obj) => {
                let v = object_value(&obj);
                let key = (ns.to_string(), name_of(&v));
                self.objects.insert(key.clone());
                if !self.ready() {
                    self.unhandled.insert(key, kept(v));
                    return Ok(());
                }
                // Handled now: an older unhandled copy must not be applied after it.
                self.unhandled.remove(&key);
                let commands = self.upsert(ctx, client, ns, &v, batch).await?;
                batch.extend(commands);
                Ok(())
            }
            Event::Delete(obj) => {
                let v = object_value(&obj);
                let name = name_of(&v);
                let key = (ns.to_string(), name.clone());
                self.objects.remove(&key);
                self.unhandled.remove(&key);
                if !self.ready() {
                    return Ok(());
                }
                // What is pending first: the store must be current to see what to delete.
                propose_all(&ctx.store, std::mem::take(batch)).await?;
                let commands = self.removed(ctx, ns, &name)?;
                propose_all(&ctx.store, commands).await
            }
        }
    }

    /// The commands for one live object (none when the store already matches). `pending`
    /// holds commands not proposed yet; they are proposed first when this has to propose.
    async fn upsert(
        &self,
        ctx: &Ctx,
        client: &kube::Client,
        ns: &str,
        v: &Value,
        pending: &mut Vec<Command>,
    ) -> Result<Vec<Command>, IngestError> {
        match self.kind {
            Kind::App => upsert_app(ctx, client, ns, v, pending).await,
            Kind::Project => upsert_project(ctx, ns, v),
        }
    }

    /// The commands after an object was deleted.
    fn removed(&self, ctx: &Ctx, ns: &str, name: &str) -> Result<Vec<Command>, IngestError> {
        let reader = ctx.store.local();
        Ok(match self.kind {
            Kind::App => {
                let key = app_key(ns, name);
                match reader.app(&key)? {
                    Some(r) if origin_of(&stored_value(&r.spec)) == Some(origin::KUBERNETES) => {
                        vec![Command::DeleteApp { app: key }]
                    }
                    _ => vec![],
                }
            }
            Kind::Project => {
                // Another namespace may still define a project of that name.
                let elsewhere = self.objects.iter().any(|(_, n)| n == name);
                if !elsewhere && reader.project(name)?.is_some() {
                    vec![Command::DeleteProject {
                        name: name.to_string(),
                    }]
                } else {
                    vec![]
                }
            }
        })
    }

    /// Make the store match every live object not handled yet, and delete what no longer
    /// exists.
    async fn reconcile_all(&mut self, ctx: &Ctx, client: &kube::Client) -> Result<(), IngestError> {
        let mut commands = Vec::new();
        for ((ns, _), packed) in &self.unhandled {
            let v = packed.value().unwrap_or(Value::Null);
            let more = self.upsert(ctx, client, ns, &v, &mut commands).await?;
            commands.extend(more);
        }
        let handled = self.unhandled.len();
        let reader = ctx.store.local();
        match self.kind {
            Kind::App => {
                let live: BTreeSet<String> = self
                    .objects
                    .iter()
                    .map(|(ns, name)| app_key(ns, name))
                    .collect();
                for r in reader.apps()? {
                    let ours = origin_of(&stored_value(&r.spec)) == Some(origin::KUBERNETES);
                    if ours && !live.contains(&r.app) {
                        commands.push(Command::DeleteApp { app: r.app });
                    }
                }
            }
            Kind::Project => {
                let live: BTreeSet<&str> = self.objects.iter().map(|(_, n)| n.as_str()).collect();
                for p in reader.projects()? {
                    if !live.contains(p.name.as_str()) {
                        commands.push(Command::DeleteProject { name: p.name });
                    }
                }
            }
        }
        tracing::info!(kind = ?self.kind, objects = self.objects.len(), handled,
            changes = commands.len(),
            "reconciled the store with the management cluster");
        propose_all(&ctx.store, commands).await?;
        // Kept until now so that a failure leaves them for the next list of any namespace.
        self.unhandled.clear();
        Ok(())
    }
}

/// The stored form of a live Application, with the `kubernetes` origin.
pub(crate) fn desired_app(v: &Value) -> Value {
    canonical(with_origin(stored_app(v), origin::KUBERNETES))
}

async fn upsert_app(
    ctx: &Ctx,
    client: &kube::Client,
    ns: &str,
    v: &Value,
    pending: &mut Vec<Command>,
) -> Result<Vec<Command>, IngestError> {
    let name = name_of(v);
    let key = app_key(ns, &name);
    let record = ctx.store.local().app(&key)?;
    let deleting = v.pointer("/metadata/deletionTimestamp").is_some();
    if deleting && record.is_none() {
        // The controller has pruned and deleted the app (or it never was ingested): let
        // Kubernetes finish deleting the resource.
        writeback::release_finalizer(client, ns, &name, &ctx.store).await;
        return Ok(vec![]);
    }
    if let Some(r) = &record {
        let theirs = origin_of(&stored_value(&r.spec)).map(str::to_string);
        if theirs.as_deref() != Some(origin::KUBERNETES) {
            tracing::warn!(app = %key, origin = ?theirs,
                "an Application resource has the key of an app of another origin; ignored");
            return Ok(vec![]);
        }
    }
    let doc = desired_app(v);
    let what = format!("Application {key}");
    match Application::from_yaml(&what, &doc.to_string()) {
        Err(e) => {
            metrics::counter!("flotilla_ingest_invalid_total", "kind" => "Application")
                .increment(1);
            tracing::error!(app = %key, error = %e, "cannot read the Application; skipped");
            return Ok(vec![]);
        }
        Ok(app) => {
            if let Err(e) = app.validate() {
                // Stored anyway: the owner reports it as a condition on the app.
                tracing::warn!(app = %key, error = %e, "invalid Application spec");
            }
        }
    }
    let mut commands = if record.is_some_and(|r| stored_value(&r.spec) == doc) {
        vec![]
    } else {
        vec![Command::PutApp {
            app: key.clone(),
            spec: Json::from(doc),
            at: now_ms(),
        }]
    };
    if !deleting {
        // A sync or refresh asked for on the resource: taken once the store has it.
        let (asks, patch) = super::requests::requests_of(&key, v);
        if let Some(patch) = patch {
            commands.extend(asks);
            let mut all = std::mem::take(pending);
            all.extend(commands);
            propose_all(&ctx.store, all).await?;
            super::requests::clear(client, ns, &name, &patch).await;
            return Ok(vec![]);
        }
    }
    Ok(commands)
}

fn upsert_project(ctx: &Ctx, ns: &str, v: &Value) -> Result<Vec<Command>, IngestError> {
    let name = name_of(v);
    let what = format!("AppProject {ns}/{name}");
    if let Err(e) = AppProject::from_yaml(&what, &v.to_string()) {
        metrics::counter!("flotilla_ingest_invalid_total", "kind" => "AppProject").increment(1);
        tracing::error!(project = %name, namespace = %ns, error = %e,
            "cannot read the AppProject; skipped");
        return Ok(vec![]);
    }
    let spec = canonical(
        v.get("spec")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
    );
    let record = ctx.store.local().project(&name)?;
    if record.is_some_and(|r| stored_value(&r.spec) == spec) {
        return Ok(vec![]);
    }
    Ok(vec![Command::PutProject {
        name,
        spec: Json::from(spec),
    }])
}
