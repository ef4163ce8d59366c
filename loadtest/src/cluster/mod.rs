//! Real `flotilla node` processes on loopback and the management cluster they watch.
//!
//! [`launcher::LocalCluster`] starts, signals and kills node processes; [`logs`] reads their
//! JSON logs (sync intervals, overlapping syncs of one app); [`setup`] installs
//! the CRDs, namespaces, cluster Secrets and `Application` resources with server-side apply;
//! [`kube_client`] opens a client from a kubeconfig file (as the simulated clusters write),
//! [`kube_config`] reads its configuration.

pub mod launcher;
pub mod logs;
pub mod setup;

use std::path::{Path, PathBuf};

/// Errors opening a Kubernetes client from a kubeconfig file.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The kubeconfig file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a usable kubeconfig.
    #[error("kubeconfig {path}: {source}")]
    Config {
        /// The kubeconfig file.
        path: PathBuf,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The client could not be built.
    #[error("kubeconfig {path}: building the client: {source}")]
    Client {
        /// The kubeconfig file.
        path: PathBuf,
        /// The cause.
        source: kube::Error,
    },
}

/// A kube client for the kubeconfig file at `path` (its current context).
pub async fn kube_client(path: &Path) -> Result<kube::Client, ClientError> {
    let config = kube_config(path).await?;
    kube::Client::try_from(config).map_err(|source| ClientError::Client {
        path: path.to_path_buf(),
        source,
    })
}

/// The client configuration of the kubeconfig file at `path` (its current context).
pub async fn kube_config(path: &Path) -> Result<kube::Config, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config_err = |e: Box<dyn std::error::Error + Send + Sync>| ClientError::Config {
        path: path.to_path_buf(),
        source: e,
    };
    let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| config_err(Box::new(e)))?;
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| config_err(Box::new(e)))
}
