use super::*;

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn envv(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Parsed, ConfigError> {
    parse_server_args(&strs(args), &envv(env))
}

fn server(args: &[&str]) -> ServerConfig {
    server_env(args, &[])
}

fn server_env(args: &[&str], env: &[(&str, &str)]) -> ServerConfig {
    match parse_env(args, env) {
        Ok(Parsed {
            invocation: Invocation::Server(c),
            ..
        }) => c,
        other => panic!("{args:?}: {other:?}"),
    }
}

fn err(args: &[&str]) -> (String, u8) {
    err_env(args, &[])
}

fn err_env(args: &[&str], env: &[(&str, &str)]) -> (String, u8) {
    match parse_env(args, env) {
        Err(e) => (e.message, e.exit_code),
        Ok(p) => panic!("{args:?} parsed: {p:?}"),
    }
}

fn lu(url: &str, host: &str, addr: &str) -> ListenUrl {
    let addr: SocketAddr = addr.parse().unwrap();
    ListenUrl {
        url: url.to_string(),
        host: host.to_string(),
        port: addr.port(),
        addr,
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn defaults() {
    let c = server(&[]);
    assert_eq!(
        c,
        ServerConfig {
            name: "default".into(),
            data_dir: "default.pikv".into(),
            listen_client_urls: vec![lu("http://localhost:2379", "localhost", "127.0.0.1:2379")],
            advertise_client_urls: strs(&["http://localhost:2379"]),
            listen_peer_urls: vec![lu("http://localhost:2380", "localhost", "127.0.0.1:2380")],
            initial_advertise_peer_urls: strs(&["http://localhost:2380"]),
            initial_cluster: pairs(&[("default", "http://localhost:2380")]),
            initial_cluster_state: ClusterState::New,
            join: vec![],
            initial_cluster_token: "etcd-cluster".into(),
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            snapshot_count: 10000,
            quota_backend_bytes: if cfg!(target_pointer_width = "32") {
                512 << 20
            } else {
                2 << 30
            },
            cors: Cors::Any,
            strict_reconfig_check: true,
            serializable_reads: false,
            force_new_cluster: false,
            debug: false,
            log_level: log::LevelFilter::Info,
        }
    );
    let p = parse_env(&[], &[]).unwrap();
    assert!(p.warnings.is_empty());
}

#[test]
fn typical_three_member_invocation_from_spec() {
    let args = [
        "--name",
        "a",
        "--data-dir",
        "a.etcd",
        "--enable-v2",
        "--listen-client-urls",
        "http://127.0.0.1:22379",
        "--advertise-client-urls",
        "http://127.0.0.1:22379",
        "--listen-peer-urls",
        "http://127.0.0.1:22380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:22380",
        "--initial-cluster",
        "a=http://127.0.0.1:22380,b=http://127.0.0.1:22480,c=http://127.0.0.1:22580",
        "--initial-cluster-token",
        "spec-tok",
        "--initial-cluster-state",
        "new",
    ];
    let p = parse_env(&args, &[]).unwrap();
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("--enable-v2"));
    let Invocation::Server(c) = p.invocation else {
        panic!("not a server invocation")
    };
    assert_eq!(c.name, "a");
    assert_eq!(c.data_dir, PathBuf::from("a.etcd"));
    assert_eq!(
        c.listen_client_urls,
        vec![lu("http://127.0.0.1:22379", "127.0.0.1", "127.0.0.1:22379")]
    );
    assert_eq!(c.advertise_client_urls, strs(&["http://127.0.0.1:22379"]));
    assert_eq!(
        c.listen_peer_urls,
        vec![lu("http://127.0.0.1:22380", "127.0.0.1", "127.0.0.1:22380")]
    );
    assert_eq!(
        c.initial_advertise_peer_urls,
        strs(&["http://127.0.0.1:22380"])
    );
    assert_eq!(
        c.initial_cluster,
        pairs(&[
            ("a", "http://127.0.0.1:22380"),
            ("b", "http://127.0.0.1:22480"),
            ("c", "http://127.0.0.1:22580"),
        ])
    );
    assert_eq!(c.initial_cluster_token, "spec-tok");
    assert_eq!(c.initial_cluster_state, ClusterState::New);
}

#[test]
fn python_etcd_style_repeated_flags_last_wins() {
    // python-etcd's test helper builds a base command line and appends overrides.
    let c = server(&[
        "-name",
        "test-node",
        "-data-dir",
        "/tmp/x",
        "-listen-client-urls",
        "http://127.0.0.1:6001",
        "-advertise-client-urls",
        "http://127.0.0.1:6001",
        "-listen-peer-urls",
        "http://127.0.0.1:8001",
        "-initial-advertise-peer-urls",
        "http://127.0.0.1:8001",
        "-initial-cluster",
        "test-node=http://127.0.0.1:8001",
        "-listen-client-urls",
        "http://127.0.0.1:6002",
        "-advertise-client-urls",
        "http://127.0.0.1:6002",
        "-data-dir=/tmp/y",
        "--heartbeat-interval",
        "50",
        "-heartbeat-interval=20",
        "-election-timeout",
        "100",
    ]);
    assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
    assert_eq!(c.listen_client_urls[0].port, 6002);
    assert_eq!(c.advertise_client_urls, strs(&["http://127.0.0.1:6002"]));
    assert_eq!((c.heartbeat_interval_ms, c.election_timeout_ms), (20, 100));
}

#[test]
fn name_alone_sets_data_dir_and_initial_cluster() {
    let c = server(&["--name", "n1"]);
    assert_eq!(c.data_dir, PathBuf::from("n1.pikv"));
    assert_eq!(c.initial_cluster, pairs(&[("n1", "http://localhost:2380")]));
    let c = server(&[
        "--name=n1",
        "--initial-advertise-peer-urls",
        "http://10.0.0.2:2380,http://10.0.0.1:2380",
        "--listen-peer-urls=http://0.0.0.0:2380",
    ]);
    assert_eq!(
        c.initial_cluster,
        pairs(&[
            ("n1", "http://10.0.0.1:2380"),
            ("n1", "http://10.0.0.2:2380")
        ])
    );
    assert_eq!(
        c.listen_peer_urls,
        vec![lu("http://0.0.0.0:2380", "0.0.0.0", "0.0.0.0:2380")]
    );
    // An empty --data-dir means the default, as in etcd.
    assert_eq!(
        server(&["--data-dir="]).data_dir,
        PathBuf::from("default.pikv")
    );
}

#[test]
fn env_values_are_used() {
    let c = server_env(
        &["--heartbeat-interval", "10"],
        &[
            ("ETCD_NAME", "e"),
            ("PIKV_NAME", "p"),
            ("ETCD_ELECTION_TIMEOUT", "60"),
            ("ETCD_CORS", "http://a.example,http://b.example:8080"),
            ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1"),
            ("PIKV_ADVERTISE_CLIENT_URLS", "http://host.example:1"),
            ("ETCD_STRICT_RECONFIG_CHECK", "false"),
        ],
    );
    assert_eq!(c.name, "p");
    assert_eq!((c.heartbeat_interval_ms, c.election_timeout_ms), (10, 60));
    assert_eq!(
        c.cors,
        Cors::Origins(strs(&["http://a.example", "http://b.example:8080"]))
    );
    assert_eq!(c.advertise_client_urls, strs(&["http://host.example:1"]));
    assert!(!c.strict_reconfig_check);
    // Listen URLs from the environment count as set explicitly.
    assert_eq!(
        err_env(&[], &[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:1")]),
        (
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .to_string(),
            1
        )
    );
}

#[test]
fn validation_errors_with_etcd_messages() {
    let cases: &[(&[&str], &str)] = &[
        (&["--heartbeat-interval=0"], "--heartbeat-interval must be >0 (set to 0ms)"),
        (&["--election-timeout=0"], "--election-timeout must be >0 (set to 0ms)"),
        (
            &["--election-timeout=400"],
            "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        ),
        (
            &["--heartbeat-interval", "50", "--heartbeat-interval", "60", "--election-timeout=200"],
            "--election-timeout[200ms] should be at least as 5 times as --heartbeat-interval[60ms]",
        ),
        (
            &["--election-timeout=60000"],
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms",
        ),
        (
            &["--listen-client-urls", "http://127.0.0.1:23799"],
            "--advertise-client-urls is required when --listen-client-urls is set explicitly",
        ),
        (
            &["--listen-client-urls", "http://example.com:1", "--advertise-client-urls", "http://x:1"],
            "expected IP in URL for binding (http://example.com:1)",
        ),
        (
            &["--listen-peer-urls", "http://peer.example:2380"],
            "expected IP in URL for binding (http://peer.example:2380)",
        ),
        (
            &["--listen-peer-urls", "http://127.0.0.1:x"],
            "invalid port in URL (http://127.0.0.1:x)",
        ),
        (
            &["--listen-peer-urls", "http://127.0.0.1:"],
            "invalid port in URL (http://127.0.0.1:)",
        ),
        (
            &["--advertise-client-urls", "http://:2379"],
            "--advertise-client-urls \"http://:2379\" must be \"host:port\" (unexpected empty host (http://:2379))",
        ),
        (
            &["--listen-client-urls", "unix://127.0.0.1:1", "--advertise-client-urls", "http://x:1"],
            "unix socket URLs are not supported: --listen-client-urls has unix://127.0.0.1:1",
        ),
        (
            &["--name", "a", "--initial-cluster", "b=http://localhost:2380"],
            "couldn't find local name \"a\" in the initial cluster configuration",
        ),
        (
            &["--name=", "--initial-cluster", "default=http://localhost:2380"],
            "couldn't find local name \"\" in the initial cluster configuration",
        ),
        (
            &["--initial-cluster-state", "existing", "--initial-cluster", "x=http://localhost:2380"],
            "couldn't find local name \"default\" in the initial cluster configuration",
        ),
        (
            &["--name", "a", "--initial-cluster", "a=http://localhost:2380,b=http://localhost:2380"],
            "initial cluster a=http://localhost:2380,b=http://localhost:2380 has duplicate url",
        ),
        (
            &["--name", "a", "--initial-cluster", "a=http://localhost:2381"],
            "--initial-cluster has a=http://localhost:2381 but missing from --initial-advertise-peer-urls=http://localhost:2380 (resolved urls: \"http://localhost:2380\" != \"http://localhost:2381\")",
        ),
        (
            &["--name", "a", "--initial-cluster", "a=http://localhost:2380,a=http://localhost:2381"],
            "--initial-cluster has a=http://localhost:2381 but missing from --initial-advertise-peer-urls=http://localhost:2380 (len([\"http://localhost:2380\"]) != len([\"http://localhost:2380\" \"http://localhost:2381\"]))",
        ),
        (
            &[
                "--name", "a", "--initial-cluster", "a=http://localhost:2380",
                "--initial-advertise-peer-urls", "http://localhost:2380,http://127.0.0.1:2380",
            ],
            "--initial-advertise-peer-urls has http://127.0.0.1:2380 but missing from --initial-cluster=a=http://127.0.0.1:2380,a=http://localhost:2380",
        ),
        (
            &["--initial-advertise-peer-urls", "http://127.0.0.1:12380"],
            "--initial-cluster has default=http://localhost:2380 but missing from --initial-advertise-peer-urls=http://127.0.0.1:12380 (resolved urls: \"http://127.0.0.1:12380\" != \"http://localhost:2380\")",
        ),
        (
            &["--name", "a", "--initial-cluster", "a"],
            "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: ",
        ),
        (
            &["--name", "a", "--initial-cluster", "a=zzz"],
            "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: zzz",
        ),
        (&["--quota-backend-bytes=-1"], "--quota-backend-bytes=-1 is negative; pikv uses it as the size of its data file"),
    ];
    for (args, msg) in cases {
        assert_eq!(err(args), (msg.to_string(), 1), "{args:?}");
    }
}

#[test]
fn existing_state_skips_advertise_match() {
    let c = server(&[
        "--name",
        "d",
        "--initial-cluster-state=existing",
        "--initial-advertise-peer-urls",
        "http://10.0.0.4:2380",
        "--listen-peer-urls",
        "http://10.0.0.4:2380",
        "--initial-cluster",
        "a=http://10.0.0.1:2380,d=http://10.0.0.4:2380",
    ]);
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    // Trailing comma and empty items are skipped like etcd's parser does.
    let c = server(&[
        "--name",
        "a",
        "--initial-cluster",
        "a=http://localhost:2380,",
    ]);
    assert_eq!(c.initial_cluster, pairs(&[("a", "http://localhost:2380")]));
}

#[test]
fn url_lists_trimmed_deduplicated_sorted() {
    let c = server(&[
        "--listen-client-urls",
        " http://127.0.0.1:4001 ,http://0.0.0.0:2379,http://127.0.0.1:4001, http://[::]:2379",
        "--advertise-client-urls",
        "http://node.example:2379, http://10.0.0.1:2379,http://node.example:2379",
    ]);
    assert_eq!(
        c.listen_client_urls,
        vec![
            lu("http://0.0.0.0:2379", "0.0.0.0", "0.0.0.0:2379"),
            lu("http://127.0.0.1:4001", "127.0.0.1", "127.0.0.1:4001"),
            lu("http://[::]:2379", "::", "[::]:2379"),
        ]
    );
    assert_eq!(
        c.advertise_client_urls,
        strs(&["http://10.0.0.1:2379", "http://node.example:2379"])
    );
    let c = server(&[
        "--listen-client-urls=http://[::1]:0",
        "--advertise-client-urls=http://[::1]:2379",
    ]);
    assert_eq!(
        c.listen_client_urls,
        vec![lu("http://[::1]:0", "::1", "[::1]:0")]
    );
}

#[test]
fn tls_and_unsupported_features_are_refused() {
    let cases: &[(&[&str], &str)] = &[
        (&["--cert-file", "c.pem"], "TLS is not supported yet: --cert-file was given; refusing to serve plaintext"),
        (&["--key-file=k.pem"], "TLS is not supported yet: --key-file was given; refusing to serve plaintext"),
        (&["--trusted-ca-file", "ca"], "TLS is not supported yet: --trusted-ca-file was given; refusing to serve plaintext"),
        (&["--client-cert-auth"], "TLS is not supported yet: --client-cert-auth was given; refusing to serve plaintext"),
        (&["--auto-tls"], "TLS is not supported yet: --auto-tls was given; refusing to serve plaintext"),
        (&["--peer-auto-tls=true"], "TLS is not supported yet: --peer-auto-tls was given; refusing to serve plaintext"),
        (&["--peer-cert-file", "p"], "TLS is not supported yet: --peer-cert-file was given; refusing to serve plaintext"),
        (&["--peer-key-file", "p"], "TLS is not supported yet: --peer-key-file was given; refusing to serve plaintext"),
        (&["--peer-trusted-ca-file", "p"], "TLS is not supported yet: --peer-trusted-ca-file was given; refusing to serve plaintext"),
        (&["--peer-client-cert-auth"], "TLS is not supported yet: --peer-client-cert-auth was given; refusing to serve plaintext"),
        (&["--client-crl-file", "x"], "TLS is not supported yet: --client-crl-file was given; refusing to serve plaintext"),
        (&["--peer-crl-file", "x"], "TLS is not supported yet: --peer-crl-file was given; refusing to serve plaintext"),
        (&["--cipher-suites", "x"], "TLS is not supported yet: --cipher-suites was given; refusing to serve plaintext"),
        (
            &["--listen-client-urls", "https://127.0.0.1:2379", "--advertise-client-urls", "http://x:1"],
            "TLS is not supported yet: --listen-client-urls has https://127.0.0.1:2379; refusing to serve plaintext",
        ),
        (
            &["--advertise-client-urls", "https://x:2379"],
            "TLS is not supported yet: --advertise-client-urls has https://x:2379; refusing to serve plaintext",
        ),
        (
            &["--listen-peer-urls", "unixs://x:1"],
            "TLS is not supported yet: --listen-peer-urls has unixs://x:1; refusing to serve plaintext",
        ),
        (
            &["--initial-cluster", "default=https://localhost:2380"],
            "TLS is not supported yet: --initial-cluster has https://localhost:2380; refusing to serve plaintext",
        ),
        (&["--discovery", "https://discovery.etcd.io/x"], "discovery is not supported: --discovery was given; bootstrap with --initial-cluster instead"),
        (&["--discovery-srv=example.com"], "discovery is not supported: --discovery-srv was given; bootstrap with --initial-cluster instead"),
        (&["--config-file", "/etc/etcd.yml"], "--config-file is not supported yet: give the settings as flags or ETCD_* environment variables"),
        (&["--proxy", "on"], "proxy mode is not supported: --proxy=on"),
    ];
    for (args, msg) in cases {
        assert_eq!(err(args), (msg.to_string(), 1), "{args:?}");
    }
    // TLS via the environment is refused the same way.
    assert_eq!(err_env(&[], &[("ETCD_CERT_FILE", "c")]).1, 1);
    // Flags that ask for no TLS are harmless (etcd unit files often spell them out).
    let p = parse_env(
        &[
            "--auto-tls=false",
            "--client-cert-auth=false",
            "--peer-auto-tls=false",
            "--cert-file=",
            "--proxy=off",
        ],
        &[],
    )
    .unwrap();
    assert!(matches!(p.invocation, Invocation::Server(_)));
}

#[test]
fn cors_values() {
    assert_eq!(server(&[]).cors, Cors::Any);
    assert_eq!(server(&["--cors=*"]).cors, Cors::Any);
    assert_eq!(server(&["--cors", "http://a.example,*"]).cors, Cors::Any);
    assert_eq!(server(&["--cors="]).cors, Cors::Origins(vec![]));
    assert_eq!(
        server(&[
            "--cors",
            "http://b.example, http://a.example:8080,http://b.example"
        ])
        .cors,
        Cors::Origins(strs(&["http://a.example:8080", "http://b.example"]))
    );
    assert_eq!(err(&["--cors=example.com"]).1, 2);
    assert_eq!(err(&["--cors=http://a.example/path"]).1, 2);
    // An empty ETCD_CORS is unset, i.e. the default.
    assert_eq!(server_env(&[], &[("ETCD_CORS", "")]).cors, Cors::Any);
}

#[test]
fn booleans_snapshot_and_log_levels() {
    let c = server(&["--strict-reconfig-check=false", "--snapshot-count", "0x10"]);
    assert!(!c.strict_reconfig_check);
    assert_eq!(c.snapshot_count, 16);
    assert_eq!(server(&["--snapshot-count=0"]).snapshot_count, 10000);
    let levels: &[(&[&str], log::LevelFilter)] = &[
        (&[], log::LevelFilter::Info),
        (&["--debug"], log::LevelFilter::Debug),
        (
            &["--debug=true", "--log-level=error"],
            log::LevelFilter::Debug,
        ),
        (
            &["--debug=false", "--log-level=warn"],
            log::LevelFilter::Warn,
        ),
        (&["--log-level", "debug"], log::LevelFilter::Debug),
        (&["--log-level", "info"], log::LevelFilter::Info),
        (&["--log-level", "error"], log::LevelFilter::Error),
        (&["--log-level", "panic"], log::LevelFilter::Error),
        (&["--log-level", "fatal"], log::LevelFilter::Error),
    ];
    for (args, want) in levels {
        let c = server(args);
        assert_eq!(c.log_level, *want, "{args:?}");
    }
    assert!(server(&["--debug"]).debug);
}

#[test]
fn quota_rules() {
    assert_eq!(resolve_quota(None, 64), Ok(2 << 30));
    assert_eq!(resolve_quota(Some("0"), 64), Ok(2 << 30));
    assert_eq!(resolve_quota(None, 32), Ok(512 << 20));
    assert_eq!(resolve_quota(Some("0"), 32), Ok(512 << 20));
    assert_eq!(resolve_quota(Some("8589934592"), 64), Ok(8 << 30));
    assert_eq!(resolve_quota(Some("2147483648"), 32), Ok(2 << 30));
    let e = resolve_quota(Some("2147483649"), 32).unwrap_err();
    assert_eq!(e.exit_code, 1);
    assert_eq!(
        e.message,
        "--quota-backend-bytes=2147483649 cannot be mapped on 32-bit (at most 2147483648 bytes)"
    );
    assert_eq!(
        resolve_quota(Some("-5"), 64).map_err(|e| e.exit_code),
        Err(1)
    );
    // Through the whole parser for a 32-bit target.
    let r = parse_server_args_for(&strs(&["--quota-backend-bytes", "4294967296"]), &[], 32);
    assert_eq!(r.map_err(|e| e.exit_code).err(), Some(1));
    let r = parse_server_args_for(&strs(&["--quota-backend-bytes", "4294967296"]), &[], 64);
    assert!(r.is_ok());
}

#[test]
fn flags_from_0_4() {
    let p = parse_env(
        &["-addr", "10.0.0.1:4001", "-peer-addr", "10.0.0.1:7001"],
        &[],
    )
    .unwrap();
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("-addr") && p.warnings[1].contains("-peer-addr"));
    let Invocation::Server(c) = p.invocation else {
        panic!("not a server invocation")
    };
    assert_eq!(c.advertise_client_urls, strs(&["http://10.0.0.1:4001"]));
    assert_eq!(
        c.listen_client_urls,
        vec![lu("http://[::]:4001", "::", "[::]:4001")]
    );
    assert_eq!(
        c.initial_advertise_peer_urls,
        strs(&["http://10.0.0.1:7001"])
    );
    assert_eq!(
        c.listen_peer_urls,
        vec![lu("http://[::]:7001", "::", "[::]:7001")]
    );

    // Host names are fine for advertised addresses; bind addresses take the advertised port.
    let c = server(&[
        "-addr=node1.example:4001",
        "-bind-addr",
        "0.0.0.0",
        "-peer-addr",
        "node1.example:7001",
        "-peer-bind-addr",
        "127.0.0.1:7101",
        "--name",
        "node1",
        "--initial-cluster",
        "node1=http://node1.example:7001",
    ]);
    assert_eq!(
        c.advertise_client_urls,
        strs(&["http://node1.example:4001"])
    );
    assert_eq!(
        c.listen_client_urls,
        vec![lu("http://0.0.0.0:4001", "0.0.0.0", "0.0.0.0:4001")]
    );
    assert_eq!(
        c.listen_peer_urls,
        vec![lu("http://127.0.0.1:7101", "127.0.0.1", "127.0.0.1:7101")]
    );
    // -bind-addr alone: 0.4's default port, and no 3.4 advertise requirement.
    let c = server(&["-bind-addr", "127.0.0.1"]);
    assert_eq!(
        c.listen_client_urls,
        vec![lu("http://127.0.0.1:4001", "127.0.0.1", "127.0.0.1:4001")]
    );
    assert_eq!(c.advertise_client_urls, strs(&["http://localhost:2379"]));
    // Via the environment (0.4's ETCD_ADDR).
    let c = server_env(&[], &[("ETCD_ADDR", "127.0.0.1:4001")]);
    assert_eq!(c.advertise_client_urls, strs(&["http://127.0.0.1:4001"]));

    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "-addr",
                "1.2.3.4:1",
                "--advertise-client-urls",
                "http://x:1",
            ],
            "Set only one of flags -advertise-client-urls and -addr",
        ),
        (
            &[
                "-bind-addr",
                "1.2.3.4:1",
                "--listen-client-urls",
                "http://1.2.3.4:1",
                "--advertise-client-urls",
                "http://x:1",
            ],
            "Set only one of flags -listen-client-urls and -bind-addr",
        ),
        (
            &[
                "-peer-addr",
                "1.2.3.4:1",
                "--initial-advertise-peer-urls",
                "http://x:1",
            ],
            "Set only one of flags -initial-advertise-peer-urls and -peer-addr",
        ),
        (
            &[
                "-peer-bind-addr",
                "1.2.3.4:1",
                "--listen-peer-urls",
                "http://1.2.3.4:1",
            ],
            "Set only one of flags -listen-peer-urls and -peer-bind-addr",
        ),
    ];
    for (args, msg) in cases {
        assert_eq!(err(args), (msg.to_string(), 1), "{args:?}");
    }
    let join_of = |args: &[&str], env: &[(&str, &str)]| match parse_env(args, env) {
        Ok(Parsed {
            invocation: Invocation::Server(c),
            ..
        }) => c.join,
        other => panic!("{args:?} {env:?}: {other:?}"),
    };
    // 0.4's -peers is --join; bare host:port items are peer addresses.
    assert_eq!(
        join_of(&["-peers", "b:7001,a:7001,b:7001"], &[]),
        vec!["http://b:7001".to_string(), "http://a:7001".to_string()]
    );
    assert_eq!(
        join_of(&[], &[("ETCD_PEERS", "127.0.0.1:7001")]),
        vec!["http://127.0.0.1:7001".to_string()]
    );
    assert_eq!(
        join_of(&["--join", "http://10.0.0.1:2379, 10.0.0.2:2380"], &[]),
        vec![
            "http://10.0.0.1:2379".to_string(),
            "http://10.0.0.2:2380".to_string()
        ]
    );
    assert!(join_of(&["--name", "x"], &[]).is_empty());
    for (args, msg) in [
        (
            &["--join", "a:1", "-peers", "b:1"][..],
            "Set only one of flags -join and -peers",
        ),
        (
            &["--join", "a:1", "--initial-cluster-state", "existing"][..],
            "--join and --initial-cluster-state existing are two ways of joining: give one",
        ),
        (
            &[
                "--name",
                "a",
                "--initial-cluster",
                "a=http://localhost:2380,b=http://b:2380",
                "-peers",
                "b:7001",
            ][..],
            "--peers learns the members from the cluster it joins: do not give --initial-cluster other members too",
        ),
    ] {
        assert_eq!(err(args), (msg.to_string(), 1), "{args:?}");
    }
    assert_eq!(
        err(&["-peers-file", "f"]),
        (
            "flag \"-peers-file\" is no longer supported.".to_string(),
            2
        )
    );
    assert_eq!(err_env(&[], &[("ETCD_PEERS", "a:x")]).1, 1);
    assert_eq!(err(&["-bind-addr", "host.example:1"]).1, 2);
}

#[test]
fn help_and_version_invocations() {
    let p = parse_env(&["--help"], &[]).unwrap();
    let Invocation::Help(text) = p.invocation else {
        panic!("not help")
    };
    assert_eq!(text, usage());
    assert_eq!(
        parse_env(&["--version"], &[]).unwrap().invocation,
        Invocation::Version
    );
}

#[test]
fn usage_lists_every_acted_flag_and_fits_80_columns() {
    let text = usage();
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "too long: {line}");
    }
    for flag in [
        "name",
        "data-dir",
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
        "initial-cluster",
        "initial-cluster-state",
        "initial-cluster-token",
        "heartbeat-interval",
        "election-timeout",
        "snapshot-count",
        "quota-backend-bytes",
        "cors",
        "strict-reconfig-check",
        "force-new-cluster",
        "debug",
        "log-level",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("  --{flag} '"))),
            "--{flag} missing from usage"
        );
    }
}

#[test]
fn force_new_cluster_is_acted_on_not_warned_about() {
    let p = parse_env(&["--force-new-cluster"], &[]).unwrap();
    let Invocation::Server(c) = p.invocation else {
        panic!("not a server")
    };
    assert!(c.force_new_cluster);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert!(!server(&["--force-new-cluster=false"]).force_new_cluster);
    assert!(server_env(&[], &[("ETCD_FORCE_NEW_CLUSTER", "true")]).force_new_cluster);
}

#[test]
fn odd_argv_never_panics() {
    let pieces = [
        "",
        "-",
        "--",
        "=",
        "-name",
        "--name=",
        "a=b",
        "-initial-cluster",
        "=,=,,",
        "-listen-client-urls",
        "http://[::1]:99999",
        "http://[",
        "http://:",
        "-addr",
        "[::1]",
        "-bind-addr",
        "[::1",
        "-peer-bind-addr",
        ":",
        "-quota-backend-bytes",
        "-9223372036854775808",
        "-cors",
        ",,*,",
        "-heartbeat-interval",
        "18446744073709551615",
        "-election-timeout",
        "é",
        "--ü=é",
        "\u{0}",
        "-initial-cluster-state",
        "existing",
    ];
    for (i, a) in pieces.iter().enumerate() {
        for b in &pieces {
            for c in &pieces[i % 7..i % 7 + 3] {
                let _ = parse_env(&[a, b, c], &[]);
                let _ = parse_env(&[c, a, b, a], &[("ETCD_INITIAL_CLUSTER", b), (a, c)]);
            }
        }
    }
    // Large values must not overflow (5 × heartbeat).
    let e = err(&["--heartbeat-interval", "18446744073709551615"]);
    assert_eq!(e.1, 1);
}
