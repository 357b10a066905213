//! argh structs, "low level": every flag pikv interprets, as the string that was typed (or
//! came from the environment), after [`super::argv`] normalised the command line.
//!
//! Everything is `Option<String>`: `None` means neither the command line nor the environment
//! set the flag, so [`super::config`] alone decides defaults and what "set explicitly" means.
//! Boolean flags arrive as their typed value (`true`, `F`, ...; bare `--debug` as `true`).

use argh::FromArgs;

/// The server's flags as argh sees them after normalisation (one `--flag value` pair each).
#[derive(FromArgs, Clone, Debug, Default, PartialEq, Eq)]
#[argh(description = "pikv server flags (normalised)")]
pub struct ServerFlags {
    /// value of --name as typed
    #[argh(option, long = "name")]
    pub name: Option<String>,
    /// value of --data-dir as typed
    #[argh(option, long = "data-dir")]
    pub data_dir: Option<String>,
    /// value of --listen-client-urls as typed
    #[argh(option, long = "listen-client-urls")]
    pub listen_client_urls: Option<String>,
    /// value of --advertise-client-urls as typed
    #[argh(option, long = "advertise-client-urls")]
    pub advertise_client_urls: Option<String>,
    /// value of --listen-peer-urls as typed
    #[argh(option, long = "listen-peer-urls")]
    pub listen_peer_urls: Option<String>,
    /// value of --initial-advertise-peer-urls as typed
    #[argh(option, long = "initial-advertise-peer-urls")]
    pub initial_advertise_peer_urls: Option<String>,
    /// value of --initial-cluster as typed
    #[argh(option, long = "initial-cluster")]
    pub initial_cluster: Option<String>,
    /// value of --initial-cluster-state as typed
    #[argh(option, long = "initial-cluster-state")]
    pub initial_cluster_state: Option<String>,
    /// value of --initial-cluster-token as typed
    #[argh(option, long = "initial-cluster-token")]
    pub initial_cluster_token: Option<String>,
    /// value of --heartbeat-interval as typed
    #[argh(option, long = "heartbeat-interval")]
    pub heartbeat_interval: Option<String>,
    /// value of --election-timeout as typed
    #[argh(option, long = "election-timeout")]
    pub election_timeout: Option<String>,
    /// value of --snapshot-count as typed
    #[argh(option, long = "snapshot-count")]
    pub snapshot_count: Option<String>,
    /// value of --quota-backend-bytes as typed
    #[argh(option, long = "quota-backend-bytes")]
    pub quota_backend_bytes: Option<String>,
    /// value of --cors as typed
    #[argh(option, long = "cors")]
    pub cors: Option<String>,
    /// value of --strict-reconfig-check as typed
    #[argh(option, long = "strict-reconfig-check")]
    pub strict_reconfig_check: Option<String>,
    /// value of --serializable-reads as typed
    #[argh(option, long = "serializable-reads")]
    pub serializable_reads: Option<String>,
    /// value of --force-new-cluster as typed
    #[argh(option, long = "force-new-cluster")]
    pub force_new_cluster: Option<String>,
    /// value of --debug as typed
    #[argh(option, long = "debug")]
    pub debug: Option<String>,
    /// value of --log-level as typed
    #[argh(option, long = "log-level")]
    pub log_level: Option<String>,
    /// value of --config-file as typed
    #[argh(option, long = "config-file")]
    pub config_file: Option<String>,
    /// value of --cert-file as typed
    #[argh(option, long = "cert-file")]
    pub cert_file: Option<String>,
    /// value of --key-file as typed
    #[argh(option, long = "key-file")]
    pub key_file: Option<String>,
    /// value of --trusted-ca-file as typed
    #[argh(option, long = "trusted-ca-file")]
    pub trusted_ca_file: Option<String>,
    /// value of --client-cert-auth as typed
    #[argh(option, long = "client-cert-auth")]
    pub client_cert_auth: Option<String>,
    /// value of --client-crl-file as typed
    #[argh(option, long = "client-crl-file")]
    pub client_crl_file: Option<String>,
    /// value of --client-cert-allowed-hostname as typed
    #[argh(option, long = "client-cert-allowed-hostname")]
    pub client_cert_allowed_hostname: Option<String>,
    /// value of --auto-tls as typed
    #[argh(option, long = "auto-tls")]
    pub auto_tls: Option<String>,
    /// value of --peer-cert-file as typed
    #[argh(option, long = "peer-cert-file")]
    pub peer_cert_file: Option<String>,
    /// value of --peer-key-file as typed
    #[argh(option, long = "peer-key-file")]
    pub peer_key_file: Option<String>,
    /// value of --peer-trusted-ca-file as typed
    #[argh(option, long = "peer-trusted-ca-file")]
    pub peer_trusted_ca_file: Option<String>,
    /// value of --peer-client-cert-auth as typed
    #[argh(option, long = "peer-client-cert-auth")]
    pub peer_client_cert_auth: Option<String>,
    /// value of --peer-auto-tls as typed
    #[argh(option, long = "peer-auto-tls")]
    pub peer_auto_tls: Option<String>,
    /// value of --peer-crl-file as typed
    #[argh(option, long = "peer-crl-file")]
    pub peer_crl_file: Option<String>,
    /// value of --peer-cert-allowed-cn as typed
    #[argh(option, long = "peer-cert-allowed-cn")]
    pub peer_cert_allowed_cn: Option<String>,
    /// value of --peer-cert-allowed-hostname as typed
    #[argh(option, long = "peer-cert-allowed-hostname")]
    pub peer_cert_allowed_hostname: Option<String>,
    /// value of --cipher-suites as typed
    #[argh(option, long = "cipher-suites")]
    pub cipher_suites: Option<String>,
    /// value of --experimental-peer-skip-client-san-verification as typed
    #[argh(option, long = "experimental-peer-skip-client-san-verification")]
    pub experimental_peer_skip_client_san_verification: Option<String>,
    /// value of --discovery as typed
    #[argh(option, long = "discovery")]
    pub discovery: Option<String>,
    /// value of --discovery-srv as typed
    #[argh(option, long = "discovery-srv")]
    pub discovery_srv: Option<String>,
    /// value of --proxy as typed
    #[argh(option, long = "proxy")]
    pub proxy: Option<String>,
    /// value of --addr as typed
    #[argh(option, long = "addr")]
    pub addr: Option<String>,
    /// value of --bind-addr as typed
    #[argh(option, long = "bind-addr")]
    pub bind_addr: Option<String>,
    /// value of --peer-addr as typed
    #[argh(option, long = "peer-addr")]
    pub peer_addr: Option<String>,
    /// value of --peer-bind-addr as typed
    #[argh(option, long = "peer-bind-addr")]
    pub peer_bind_addr: Option<String>,
    /// value of --peers as typed
    #[argh(option, long = "peers")]
    pub peers: Option<String>,
    /// value of --join as typed
    #[argh(option, long = "join")]
    pub join: Option<String>,
    /// value of --peers-file as typed
    #[argh(option, long = "peers-file")]
    pub peers_file: Option<String>,
}

impl ServerFlags {
    /// Parse a normalised argv (as produced by [`super::argv::normalise`]) with argh.
    ///
    /// Errors are argh's first output line; they only happen if normalisation and this struct
    /// disagree, which the tests rule out.
    pub fn parse(argv: &[String]) -> Result<Self, String> {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        Self::from_args(&["pikv"], &args).map_err(|e| {
            e.output
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim()
                .to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::argv::{Use, FLAGS};

    #[test]
    fn every_argh_flag_is_a_field() {
        for spec in FLAGS.iter().filter(|s| s.use_ == Use::Argh) {
            let argv = vec![format!("--{}", spec.name), "-x".to_string()];
            let parsed = ServerFlags::parse(&argv);
            assert!(parsed.is_ok(), "{}: {parsed:?}", spec.name);
            assert_ne!(parsed.ok(), Some(ServerFlags::default()), "{}", spec.name);
        }
    }

    #[test]
    fn values_that_look_like_flags_stay_values() {
        for v in ["--help", "--", "-", "", "--name"] {
            let argv = vec!["--name".to_string(), v.to_string()];
            assert_eq!(
                ServerFlags::parse(&argv).map(|f| f.name),
                Ok(Some(v.to_string()))
            );
        }
    }
}
