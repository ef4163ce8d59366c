use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
struct TestCli {
    #[command(flatten)]
    node: Args,
}

fn parse_args(flags: &[&str]) -> Args {
    let mut argv = vec!["node"];
    argv.extend_from_slice(flags);
    match TestCli::try_parse_from(argv) {
        Ok(c) => c.node,
        Err(e) => panic!("flags did not parse: {e}"),
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn run(
    args: &Args,
    env: &HashMap<String, String>,
    file: Option<&str>,
    hostname: Option<&str>,
) -> Result<NodeConfig, ConfigError> {
    load(Sources {
        args,
        env,
        file: file.map(|t| ("config.yaml", t)),
        hostname,
    })
}

fn err_text(r: Result<NodeConfig, ConfigError>) -> String {
    match r {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let c = run(&Args::default(), &env(&[]), None, Some("flotilla-0")).unwrap();
    assert_eq!(c.node_id, 1);
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.peer_listen.to_string(), DEFAULT_PEER_LISTEN);
    assert_eq!(c.api_listen.to_string(), DEFAULT_API_LISTEN);
    assert_eq!(c.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
    assert_eq!(c.advertise, "flotilla-0:7000");
    assert_eq!(c.voters, 3);
    assert_eq!(c.shard_count, flotilla_shard::DEFAULT_SHARD_COUNT);
    assert_eq!(c.tls, None);
    assert_eq!(c.api_token, None);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.grace_period, Duration::from_secs(30));
    assert_eq!(c.role(), Role::Bootstrap);
}

#[test]
fn flags_beat_env_beat_file() {
    let file =
        "voters: 3\ndataDir: /file\nshardCount: 64\ngracePeriodSeconds: 5\nlogFormat: json\n";
    let e = env(&[
        ("FLOTILLA_VOTERS", "5"),
        ("FLOTILLA_DATA_DIR", "/env"),
        ("FLOTILLA_LOG_FORMAT", "text"),
    ]);
    let args = parse_args(&["--data-dir", "/flag", "--node-id", "2"]);
    let c = run(&args, &e, Some(file), None).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/flag"));
    assert_eq!(c.voters, 5, "env beats file");
    assert_eq!(c.shard_count, 64, "file beats default");
    assert_eq!(c.grace_period, Duration::from_secs(5));
    assert_eq!(c.log_format, LogFormat::Text, "env beats file");
    assert_eq!(c.node_id, 2);
    let c = run(&args, &env(&[]), Some(file), None).unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.voters, 3);
}

#[test]
fn voters_must_be_three_or_five_with_location() {
    let args = parse_args(&["--voters", "4", "--node-id", "1"]);
    assert_eq!(
        err_text(run(&args, &env(&[]), None, None)),
        "--voters: must be 3 or 5, got 4"
    );
    let e = env(&[("FLOTILLA_VOTERS", "1")]);
    let args = parse_args(&["--node-id", "1"]);
    assert_eq!(
        err_text(run(&args, &e, None, None)),
        "FLOTILLA_VOTERS: must be 3 or 5, got 1"
    );
    assert_eq!(
        err_text(run(&args, &env(&[]), Some("voters: 7\n"), None)),
        "config.yaml: voters: must be 3 or 5, got 7"
    );
    let e = env(&[("FLOTILLA_VOTERS", "three")]);
    assert_eq!(
        err_text(run(&args, &e, None, None)),
        "FLOTILLA_VOTERS: not an integer: \"three\""
    );
}

#[test]
fn other_validation_errors_say_where() {
    let args = parse_args(&["--node-id", "0"]);
    assert_eq!(
        err_text(run(&args, &env(&[]), None, None)),
        "--node-id: must be at least 1, got 0"
    );
    let args = parse_args(&["--node-id", "1", "--shard-count", "0"]);
    assert!(err_text(run(&args, &env(&[]), None, None)).starts_with("--shard-count:"));
    let args = parse_args(&["--node-id", "1", "--tls-ca", "/ca.pem"]);
    assert!(err_text(run(&args, &env(&[]), None, None)).contains("must be given together"));
    let args = parse_args(&["--node-id", "1", "--peers", "1=a:7000,x=b:7000"]);
    let text = err_text(run(&args, &env(&[]), None, None));
    assert!(text.starts_with("--peers: peer id must be"), "{text}");
    let e = env(&[("FLOTILLA_PEER_LISTEN", "nowhere")]);
    let args = parse_args(&["--node-id", "1"]);
    assert!(err_text(run(&args, &e, None, None)).starts_with("FLOTILLA_PEER_LISTEN: not a socket"));
    let text = err_text(run(&args, &env(&[]), Some("apiListen: bad\n"), None));
    assert_eq!(
        text,
        "config.yaml: apiListen: not a socket address: \"bad\""
    );
    assert!(err_text(run(&Args::default(), &env(&[]), None, None)).starts_with("--node-id:"));
    let args = parse_args(&["--node-id", "1", "--advertise", "no-port"]);
    assert!(
        err_text(run(&args, &env(&[]), None, None)).starts_with("--advertise: expected host:port")
    );
}

#[test]
fn unknown_file_fields_are_errors_with_line() {
    let args = parse_args(&["--node-id", "1"]);
    let text = err_text(run(
        &args,
        &env(&[]),
        Some("voters: 3\ndataDir: /d\npeerz: []\n"),
        None,
    ));
    assert!(
        text.starts_with("config.yaml: unknown field `peerz`"),
        "{text}"
    );
    assert!(text.ends_with("at line 3"), "{text}");
    let text = err_text(run(&args, &env(&[]), Some("voters: [\n"), None));
    assert!(text.starts_with("config.yaml: "), "{text}");
}

#[test]
fn ordinals_from_hostnames() {
    assert_eq!(ordinal_of_hostname("flotilla-0"), Ok(0));
    assert_eq!(ordinal_of_hostname("flotilla-12"), Ok(12));
    assert_eq!(ordinal_of_hostname("my-app-flotilla-3"), Ok(3));
    assert_eq!(
        ordinal_of_hostname("flotilla-4.flotilla-peers.ns.svc"),
        Ok(4)
    );
    for bad in [
        "flotilla",
        "flotilla-",
        "-3",
        "flotilla-x1",
        "flotilla-01",
        "",
        "flotilla-99999999999",
    ] {
        let e = ordinal_of_hostname(bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("hostname {bad:?}:")), "{e}");
    }
    let c = run(&Args::default(), &env(&[]), None, Some("flotilla-12")).unwrap();
    assert_eq!(c.node_id, 13);
    assert!(run(&Args::default(), &env(&[]), None, Some("laptop")).is_err());
}

const PATTERN: &str = "flotilla-{ordinal}.flotilla-peers.flotilla.svc.cluster.local:7000";

#[test]
fn statefulset_peers_and_roles() {
    let args = parse_args(&["--peer-dns-pattern", PATTERN, "--replicas", "3"]);
    let c0 = run(&args, &env(&[]), None, Some("flotilla-0")).unwrap();
    assert_eq!(c0.peers.len(), 3);
    assert_eq!(c0.peers[2].id, 3);
    assert_eq!(
        c0.peers[2].addr,
        "flotilla-2.flotilla-peers.flotilla.svc.cluster.local:7000"
    );
    assert_eq!(
        c0.advertise,
        "flotilla-0.flotilla-peers.flotilla.svc.cluster.local:7000"
    );
    assert_eq!(c0.role(), Role::Bootstrap);
    let c2 = run(&args, &env(&[]), None, Some("flotilla-2")).unwrap();
    assert_eq!(c2.node_id, 3);
    assert_eq!(
        c2.advertise,
        "flotilla-2.flotilla-peers.flotilla.svc.cluster.local:7000"
    );
    assert_eq!(
        c2.role(),
        Role::Join(vec![
            "flotilla-0.flotilla-peers.flotilla.svc.cluster.local:7000".into(),
            "flotilla-1.flotilla-peers.flotilla.svc.cluster.local:7000".into(),
        ])
    );
    let text = err_text(run(&args, &env(&[]), None, Some("flotilla-3")));
    assert!(text.contains("beyond --replicas 3"), "{text}");
    let no_replicas = parse_args(&["--peer-dns-pattern", PATTERN]);
    assert!(
        err_text(run(&no_replicas, &env(&[]), None, Some("flotilla-0")))
            .contains("needs --replicas")
    );
    let bad = parse_args(&[
        "--peer-dns-pattern",
        "flotilla.peers:7000",
        "--replicas",
        "3",
    ]);
    assert!(err_text(run(&bad, &env(&[]), None, Some("flotilla-0"))).contains("{ordinal}"));
}

#[test]
fn explicit_peers_give_roles() {
    let args = parse_args(&[
        "--node-id",
        "1",
        "--peers",
        "1=a:7000,2=b:7000",
        "--peers",
        "3=c:7000",
    ]);
    let c = run(&args, &env(&[]), None, None).unwrap();
    assert_eq!(c.role(), Role::Bootstrap);
    let e = env(&[("FLOTILLA_NODE_ID", "3")]);
    let args = parse_args(&["--peers", "1=a:7000,2=b:7000,3=c:7000"]);
    let c = run(&args, &e, None, None).unwrap();
    assert_eq!(c.role(), Role::Join(vec!["a:7000".into(), "b:7000".into()]));
    let c = run(
        &parse_args(&["--node-id", "2"]),
        &env(&[]),
        Some("peers: [\"1=a:7000\"]\n"),
        None,
    )
    .unwrap();
    assert_eq!(
        c.peers,
        vec![Peer {
            id: 1,
            addr: "a:7000".into()
        }]
    );
    assert_eq!(c.role(), Role::Join(vec!["a:7000".into()]));
    let args = parse_args(&["--node-id", "1", "--peers", "2=b:7000,3=c:7000"]);
    let c = run(&args, &env(&[]), None, None).unwrap();
    assert_eq!(c.role(), Role::Join(vec!["b:7000".into(), "c:7000".into()]));
    let args = parse_args(&["--node-id", "1", "--peers", "1=a:7000,1=b:7000"]);
    assert_eq!(
        err_text(run(&args, &env(&[]), None, None)),
        "--peers: peer id 1 given twice"
    );
    let zero = parse_args(&["--peer-dns-pattern", PATTERN, "--replicas", "0"]);
    assert_eq!(
        err_text(run(&zero, &env(&[]), None, Some("flotilla-0"))),
        "--replicas: must be at least 1, got 0"
    );
}

#[test]
fn secrets_never_show_in_debug() {
    let e = env(&[
        ("FLOTILLA_API_TOKEN", "tok-s3cr3t"),
        ("FLOTILLA_WEBHOOK_SECRET", "hook-s3cr3t"),
    ]);
    let c = run(&parse_args(&["--node-id", "1"]), &e, None, None).unwrap();
    let shown = format!("{c:?} {c:#?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("redacted"));
    match &c.api_token {
        Some(SecretSource::Value(s)) => assert_eq!(s.expose(), "tok-s3cr3t"),
        other => panic!("unexpected {other:?}"),
    }
    let args = parse_args(&["--node-id", "1", "--api-token-file", "/t"]);
    let text = err_text(run(&args, &e, None, None));
    assert_eq!(
        text,
        "--api-token-file: cannot be combined with FLOTILLA_API_TOKEN"
    );
}

#[test]
fn flag_names_list_every_long_flag() {
    let names = flag_names();
    for want in [
        "config",
        "node-id",
        "data-dir",
        "peer-listen",
        "api-listen",
        "http-listen",
        "advertise",
        "peers",
        "peer-dns-pattern",
        "replicas",
        "voters",
        "shard-count",
        "tls-ca",
        "tls-cert",
        "tls-key",
        "api-token-file",
        "api-tls-cert",
        "api-tls-key",
        "api-tls-ca",
        "webhook-secret-file",
        "grace-period-seconds",
        "kubeconfig",
        "namespaces",
        "secrets-namespace",
        "apps-dir",
        "apps-repo",
        "apps-repo-revision",
        "apps-repo-path",
        "allow-local-repos",
        "resync-seconds",
        "repo-poll-seconds",
        "workers",
        "watch-all-kinds",
        "store-cache-mb",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "missing {want} in {names:?}"
        );
    }
    assert_eq!(names.len(), 34);
}

#[test]
fn controller_settings_have_defaults_and_checked_values() {
    let env = HashMap::new();
    let args = parse_args(&["--node-id", "1"]);
    let cfg = load(Sources {
        args: &args,
        env: &env,
        file: None,
        hostname: None,
    })
    .expect("defaults");
    assert_eq!(cfg.controller.namespaces, vec!["argocd".to_string()]);
    assert_eq!(cfg.controller.secrets_namespace, "argocd");
    assert!(!cfg.controller.allow_local_repos);
    assert_eq!(cfg.controller.resync, Duration::from_secs(180));

    let args = parse_args(&[
        "--node-id",
        "1",
        "--namespaces",
        "apps,team-a",
        "--allow-local-repos",
        "--resync-seconds",
        "5",
    ]);
    let env = HashMap::from([("FLOTILLA_WORKERS".to_string(), "4".to_string())]);
    let cfg = load(Sources {
        args: &args,
        env: &env,
        file: Some(("node.yaml", "repoPollSeconds: 7\nsecretsNamespace: ops\n")),
        hostname: None,
    })
    .expect("values");
    let c = &cfg.controller;
    assert_eq!(c.namespaces, vec!["apps".to_string(), "team-a".to_string()]);
    assert_eq!(c.secrets_namespace, "ops");
    assert!(c.allow_local_repos);
    assert_eq!(c.resync, Duration::from_secs(5));
    assert_eq!(c.repo_poll, Duration::from_secs(7));
    assert_eq!(c.workers, 4);

    let env = HashMap::from([("FLOTILLA_WORKERS".to_string(), "0".to_string())]);
    let err = load(Sources {
        args: &parse_args(&["--node-id", "1"]),
        env: &env,
        file: None,
        hostname: None,
    })
    .expect_err("zero workers");
    assert!(err.to_string().contains("FLOTILLA_WORKERS"), "{err}");
}

#[test]
fn the_store_cache_has_a_default_and_is_at_least_one_mib() {
    let env = HashMap::new();
    let args = parse_args(&["--node-id", "1"]);
    let cfg = run(&args, &env, None, None).expect("defaults");
    assert_eq!(cfg.store_cache_bytes, 64 << 20);
    let cfg = run(&args, &env, Some("storeCacheMb: 24\n"), None).expect("file");
    assert_eq!(cfg.store_cache_bytes, 24 << 20);
    let flag = parse_args(&["--node-id", "1", "--store-cache-mb", "8"]);
    let cfg = run(&flag, &env, Some("storeCacheMb: 64\n"), None).expect("flag");
    assert_eq!(cfg.store_cache_bytes, 8 << 20);
    let zero = parse_args(&["--node-id", "1", "--store-cache-mb", "0"]);
    let err = err_text(run(&zero, &env, None, None));
    assert!(err.contains("store cache"), "{err}");
}

#[test]
fn apps_repo_flags_env_and_file() {
    let host = Some("flotilla-0");
    let c = run(&Args::default(), &env(&[]), None, host).unwrap();
    assert_eq!(c.controller.apps_repo, None);

    let args = parse_args(&["--apps-repo", "https://git.example.com/apps.git"]);
    let c = run(&args, &env(&[]), None, host).unwrap();
    assert_eq!(
        c.controller.apps_repo,
        Some((
            "https://git.example.com/apps.git".into(),
            "HEAD".into(),
            ".".into()
        ))
    );

    let e = env(&[
        ("FLOTILLA_APPS_REPO", "https://git.example.com/apps.git"),
        ("FLOTILLA_APPS_REPO_REVISION", "main"),
    ]);
    let file = "appsRepoPath: clusters/prod\n";
    let c = run(&Args::default(), &e, Some(file), host).unwrap();
    assert_eq!(
        c.controller.apps_repo,
        Some((
            "https://git.example.com/apps.git".into(),
            "main".into(),
            "clusters/prod".into()
        ))
    );

    let args = parse_args(&["--apps-repo-path", "apps"]);
    let text = err_text(run(&args, &env(&[]), None, host));
    assert!(
        text.contains("--apps-repo-path") && text.contains("needs --apps-repo"),
        "{text}"
    );
    let args = parse_args(&[
        "--apps-repo",
        "https://x/a.git",
        "--apps-repo-path",
        "../up",
    ]);
    let text = err_text(run(&args, &env(&[]), None, host));
    assert!(
        text.contains("relative path inside the repository"),
        "{text}"
    );
}

#[test]
fn api_tls_needs_cert_and_key_and_defaults_its_ca_to_the_peer_ca() {
    let host = Some("flotilla-0");
    let args = parse_args(&[
        "--api-tls-cert",
        "/tls/api.crt",
        "--api-tls-key",
        "/tls/api.key",
    ]);
    let c = run(&args, &env(&[]), None, host).unwrap();
    assert_eq!(
        c.api_tls,
        Some(ApiTlsFiles {
            cert: "/tls/api.crt".into(),
            key: "/tls/api.key".into(),
            ca: None
        })
    );
    let args = parse_args(&[
        "--api-tls-cert",
        "/tls/api.crt",
        "--api-tls-key",
        "/tls/api.key",
        "--tls-ca",
        "/peer/ca.crt",
        "--tls-cert",
        "/peer/tls.crt",
        "--tls-key",
        "/peer/tls.key",
    ]);
    let c = run(&args, &env(&[]), None, host).unwrap();
    assert_eq!(c.api_tls.and_then(|t| t.ca), Some("/peer/ca.crt".into()));
    let e = env(&[("FLOTILLA_API_TLS_CERT", "/tls/api.crt")]);
    let text = err_text(run(&Args::default(), &e, None, host));
    assert!(
        text.contains("FLOTILLA_API_TLS_CERT") && text.contains("must be given together"),
        "{text}"
    );
    let args = parse_args(&["--api-tls-ca", "/tls/ca.crt"]);
    let text = err_text(run(&args, &env(&[]), None, host));
    assert!(text.contains("--api-tls-ca"), "{text}");
}
