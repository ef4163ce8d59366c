//! `flotilla cluster|repo|member|shard|admin …`: the cluster-wide commands, through a
//! node's API.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use flotilla_proto::v1 as pb;
use serde_json::{json, Value};

use super::remote::{or_none, print_doc, rpc, table, Output, RemoteArgs};

/// A command group with the shared node and output options.
#[derive(Debug, Args)]
pub struct GroupArgs<C: Subcommand> {
    /// Node and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: C,
}

/// `flotilla cluster`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List destination clusters and this node's connection to each.
    List,
}

/// `flotilla repo`.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// List repositories and their recorded revisions.
    List,
}

/// `flotilla member`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List the members of the Raft group.
    List,
    /// Add a node as a learner (with --promote: as a voter once caught up).
    Add {
        /// The node's id.
        id: u64,
        /// The node's Raft address, `host:port`.
        addr: String,
        /// Make it a voter.
        #[arg(long)]
        promote: bool,
    },
    /// Remove a node from the group.
    Remove {
        /// The node's id.
        id: u64,
    },
}

/// `flotilla shard`.
#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// Show the shard map: shards and applications per node.
    List {
        /// Also list every shard.
        #[arg(long)]
        per_shard: bool,
    },
}

/// `flotilla admin`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print the whole replicated state as one JSON document (no secrets are in it).
    Export,
    /// Load a document written by `admin export` (`-` reads stdin); statuses are recomputed.
    Import {
        /// The document.
        file: PathBuf,
    },
}

/// Run `flotilla cluster …`.
pub async fn run_cluster(
    args: &GroupArgs<ClusterCommand>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let r = &args.remote;
    let client = r.client()?;
    let ClusterCommand::List = args.command;
    let resp = client
        .grpc()
        .list_clusters(pb::ListClustersRequest {
            consistent: r.consistent,
        })
        .await
        .map_err(rpc(&client))?
        .into_inner();
    if r.output == Output::Table {
        let rows: Vec<[String; 5]> = resp
            .clusters
            .iter()
            .map(|c| {
                [
                    c.server.clone(),
                    c.name.clone(),
                    c.connection.clone(),
                    c.message.clone(),
                    or_none(c.secret_ref.clone()),
                ]
            })
            .collect();
        table(
            out,
            ["SERVER", "NAME", "STATUS", "MESSAGE", "SECRET"],
            &rows,
        )?;
    } else {
        let doc: Vec<Value> = resp
            .clusters
            .iter()
            .map(|c| {
                json!({"name": c.name, "server": c.server, "secretRef": c.secret_ref,
                       "connection": c.connection, "message": c.message})
            })
            .collect();
        print_doc(out, r.output, &Value::Array(doc))?;
    }
    Ok(true)
}

/// Run `flotilla repo …`.
pub async fn run_repo(args: &GroupArgs<RepoCommand>, out: &mut dyn Write) -> anyhow::Result<bool> {
    let r = &args.remote;
    let client = r.client()?;
    let RepoCommand::List = args.command;
    let resp = client
        .grpc()
        .list_repos(pb::ListReposRequest {
            consistent: r.consistent,
        })
        .await
        .map_err(rpc(&client))?
        .into_inner();
    if r.output == Output::Table {
        let mut rows: Vec<[String; 4]> = Vec::new();
        for repo in &resp.repos {
            if repo.revisions.is_empty() {
                rows.push([
                    repo.url.clone(),
                    or_none(repo.secret_ref.clone()),
                    "".into(),
                    "".into(),
                ]);
            }
            for rev in &repo.revisions {
                rows.push([
                    repo.url.clone(),
                    or_none(repo.secret_ref.clone()),
                    rev.git_ref.clone(),
                    rev.sha.clone(),
                ]);
            }
        }
        table(out, ["REPO", "SECRET", "REF", "REVISION"], &rows)?;
    } else {
        let doc: Vec<Value> = resp
            .repos
            .iter()
            .map(|repo| {
                let revs: Vec<Value> = repo
                    .revisions
                    .iter()
                    .map(|v| json!({"ref": v.git_ref, "sha": v.sha, "at": v.at}))
                    .collect();
                json!({"url": repo.url, "secretRef": repo.secret_ref, "revisions": revs})
            })
            .collect();
        print_doc(out, r.output, &Value::Array(doc))?;
    }
    Ok(true)
}

/// Run `flotilla member …`.
pub async fn run_member(
    args: &GroupArgs<MemberCommand>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let r = &args.remote;
    let client = r.client()?;
    let mut grpc = client.grpc();
    let err = rpc(&client);
    let message = match &args.command {
        MemberCommand::List => {
            let resp = grpc
                .list_members(pb::ListMembersRequest {
                    consistent: r.consistent,
                })
                .await
                .map_err(&err)?
                .into_inner();
            if r.output == Output::Table {
                let rows: Vec<[String; 7]> = resp
                    .members
                    .iter()
                    .map(|m| {
                        [
                            m.id.to_string(),
                            m.addr.clone(),
                            m.api_addr.clone(),
                            m.role.clone(),
                            if m.leader { "leader" } else { "" }.into(),
                            if m.draining { "draining" } else { "" }.into(),
                            m.version.clone(),
                        ]
                    })
                    .collect();
                table(
                    out,
                    ["ID", "ADDRESS", "API", "ROLE", "LEADER", "STATE", "VERSION"],
                    &rows,
                )?;
            } else {
                let members: Vec<Value> = resp
                    .members
                    .iter()
                    .map(|m| {
                        json!({"id": m.id, "addr": m.addr, "apiAddr": m.api_addr, "role": m.role,
                               "leader": m.leader, "draining": m.draining, "version": m.version})
                    })
                    .collect();
                let doc = json!({"term": resp.term, "leader": resp.leader, "members": members});
                print_doc(out, r.output, &doc)?;
            }
            return Ok(true);
        }
        MemberCommand::Add { id, addr, promote } => {
            grpc.add_member(pb::AddMemberRequest {
                id: *id,
                addr: addr.clone(),
                promote: *promote,
            })
            .await
            .map_err(&err)?
            .into_inner()
            .message
        }
        MemberCommand::Remove { id } => {
            grpc.remove_member(pb::RemoveMemberRequest { id: *id })
                .await
                .map_err(&err)?
                .into_inner()
                .message
        }
    };
    if r.output == Output::Table {
        writeln!(out, "{message}")?;
    } else {
        print_doc(out, r.output, &json!({"message": message}))?;
    }
    Ok(true)
}

/// Run `flotilla shard …`.
pub async fn run_shard(
    args: &GroupArgs<ShardCommand>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let r = &args.remote;
    let client = r.client()?;
    let ShardCommand::List { per_shard } = args.command;
    let resp = client
        .grpc()
        .list_shards(pb::ListShardsRequest {
            consistent: r.consistent,
            per_shard,
        })
        .await
        .map_err(rpc(&client))?
        .into_inner();
    let node = |n: u64| {
        if n == 0 {
            "<none>".to_string()
        } else {
            n.to_string()
        }
    };
    if r.output == Output::Table {
        if resp.shard_count == 0 {
            writeln!(out, "no shard map has been committed yet")?;
            return Ok(true);
        }
        writeln!(out, "epoch {}, {} shards", resp.epoch, resp.shard_count)?;
        let rows: Vec<[String; 3]> = resp
            .nodes
            .iter()
            .map(|n| [node(n.node), n.shards.to_string(), n.apps.to_string()])
            .collect();
        table(out, ["NODE", "SHARDS", "APPS"], &rows)?;
        if per_shard {
            writeln!(out)?;
            let rows: Vec<[String; 4]> = resp
                .shards
                .iter()
                .map(|s| {
                    [
                        s.shard.to_string(),
                        node(s.owner),
                        s.since.to_string(),
                        s.apps.to_string(),
                    ]
                })
                .collect();
            table(out, ["SHARD", "OWNER", "SINCE", "APPS"], &rows)?;
        }
    } else {
        let nodes: Vec<Value> = resp
            .nodes
            .iter()
            .map(|n| json!({"node": n.node, "shards": n.shards, "apps": n.apps}))
            .collect();
        let shards: Vec<Value> = resp
            .shards
            .iter()
            .map(|s| json!({"shard": s.shard, "owner": s.owner, "since": s.since, "apps": s.apps}))
            .collect();
        let doc = json!({"epoch": resp.epoch, "shardCount": resp.shard_count,
                         "nodes": nodes, "shards": shards});
        print_doc(out, r.output, &doc)?;
    }
    Ok(true)
}

/// Run `flotilla admin …`.
pub async fn run_admin(
    args: &GroupArgs<AdminCommand>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let r = &args.remote;
    let client = r.client()?;
    let mut grpc = client.grpc();
    match &args.command {
        AdminCommand::Export => {
            let resp = grpc
                .export(pb::ExportRequest {
                    consistent: r.consistent,
                })
                .await
                .map_err(rpc(&client))?
                .into_inner();
            if r.output == Output::Yaml {
                let doc: Value = serde_json::from_str(&resp.document_json)
                    .context("the node sent an unreadable export")?;
                print_doc(out, r.output, &doc)?;
            } else {
                writeln!(out, "{}", resp.document_json)?;
            }
        }
        AdminCommand::Import { file } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the document from stdin")?;
            } else {
                text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
            }
            // YAML is a superset of JSON: accept an export converted to YAML too.
            let doc: Value = serde_yaml::from_str(&text)
                .with_context(|| format!("{} is not a JSON or YAML document", file.display()))?;
            let resp = grpc
                .import(pb::ImportRequest {
                    document_json: doc.to_string(),
                })
                .await
                .map_err(rpc(&client))?
                .into_inner();
            let doc = json!({"apps": resp.apps, "projects": resp.projects, "clusters": resp.clusters,
                             "repos": resp.repos, "revisions": resp.revisions});
            if r.output == Output::Table {
                writeln!(
                    out,
                    "imported {} apps, {} projects, {} clusters, {} repos, {} revisions",
                    resp.apps, resp.projects, resp.clusters, resp.repos, resp.revisions
                )?;
            } else {
                print_doc(out, r.output, &doc)?;
            }
        }
    }
    Ok(true)
}
