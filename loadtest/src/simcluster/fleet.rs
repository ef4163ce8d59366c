//! Many simulated clusters in one process, sharing one CA, each on its own port.

use super::{kubeconfig_for, Certs, SimCluster, SimConfig, SimError};
use std::path::Path;

/// A set of simulated clusters named `{prefix}-{index}`.
#[derive(Debug)]
pub struct SimFleet {
    clusters: Vec<SimCluster>,
}

/// Errors of fleet operations.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A cluster failed to start.
    #[error(transparent)]
    Start(#[from] SimError),
    /// A kubeconfig could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// File written.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Writes a file only its owner can read: kubeconfigs hold the clusters' bearer tokens.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        opts.mode(0o600);
        let mut file = opts.open(path)?;
        // `mode` applies only when the file is created; tighten one left by an older run.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        opts.open(path)?.write_all(text.as_bytes())
    }
}

impl SimFleet {
    /// Starts `n` clusters from a template config; cluster `i` listens on `port_base + i`
    /// (or a free port when `port_base` is 0) and is named `{template.name}-{i}`.
    pub async fn start(
        n: usize,
        port_base: u16,
        template: SimConfig,
    ) -> Result<SimFleet, FleetError> {
        let certs = match (&template.certs, template.tls) {
            (Some(c), _) => Some(c.clone()),
            (None, true) => Some(Certs::generate().map_err(SimError::from)?),
            (None, false) => None,
        };
        let mut clusters = Vec::with_capacity(n);
        for i in 0..n {
            let port = if port_base == 0 {
                0
            } else {
                port_base.saturating_add(i as u16)
            };
            let cfg = SimConfig {
                name: format!("{}-{i}", template.name),
                port,
                certs: certs.clone(),
                ..template.clone()
            };
            match SimCluster::start(cfg).await {
                Ok(c) => clusters.push(c),
                Err(e) => {
                    for c in clusters {
                        c.shutdown().await;
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(SimFleet { clusters })
    }

    /// The clusters, in index order.
    pub fn clusters(&self) -> &[SimCluster] {
        &self.clusters
    }

    /// A kubeconfig with every cluster as a context (the first is current).
    pub fn kubeconfig(&self) -> Result<String, SimError> {
        let refs: Vec<&SimCluster> = self.clusters.iter().collect();
        kubeconfig_for(&refs, None)
    }

    /// Writes `{name}.kubeconfig` per cluster and `all.kubeconfig` into `dir`.
    pub fn write_kubeconfigs(&self, dir: &Path) -> Result<(), FleetError> {
        let write = |name: String, text: String| {
            let path = dir.join(name);
            write_private(&path, &text).map_err(|source| FleetError::Write {
                path: path.display().to_string(),
                source,
            })
        };
        std::fs::create_dir_all(dir).map_err(|source| FleetError::Write {
            path: dir.display().to_string(),
            source,
        })?;
        for c in &self.clusters {
            write(format!("{}.kubeconfig", c.name()), c.kubeconfig()?)?;
        }
        write("all.kubeconfig".into(), self.kubeconfig()?)
    }

    /// Stops every cluster.
    pub async fn shutdown(self) {
        for c in self.clusters {
            c.shutdown().await;
        }
    }
}
