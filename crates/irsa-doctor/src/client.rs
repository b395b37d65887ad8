//! The Kubernetes client: in-cluster config or KUBECONFIG (and, for `check`, kubectl's
//! `--kubeconfig` and `--context`), identifying itself as irsa-doctor.

use std::path::{Path, PathBuf};

use std::time::Duration;

use http::{header, HeaderValue};
use kube::client::retry::RetryPolicy;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

/// The User-Agent of every request, so audit logs (and the tests' RBAC check) can tell
/// irsa-doctor's requests apart.
pub const USER_AGENT: &str = concat!("irsa-doctor/", env!("CARGO_PKG_VERSION"));

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Neither in-cluster configuration nor a kubeconfig was usable.
    #[error("loading the Kubernetes configuration (in-cluster, or KUBECONFIG): {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The kubeconfig named by `--kubeconfig` (or `KUBECONFIG`, `~/.kube/config`) is unusable.
    // kube's message already ends with its own cause's, so the error is shown, not chained:
    // chained, `{:#}` would print that cause twice.
    #[error("{origin}: {error}")]
    Kubeconfig {
        /// Which kubeconfig: the flag and its path, or where it was looked for.
        origin: String,
        /// What failed.
        error: KubeconfigError,
    },
    /// `--context` names a context the kubeconfig does not have.
    #[error("--context {context}: no such context in {origin}; it has: {}. List them with `kubectl config get-contexts`", available.join(", "))]
    UnknownContext {
        /// The context asked for.
        context: String,
        /// Which kubeconfig was read.
        origin: String,
        /// The contexts it has.
        available: Vec<String>,
    },
    /// Neither `--context` nor the kubeconfig's `current-context` names a context.
    #[error("{origin} sets no current-context; pass --context NAME (it has: {})", available.join(", "))]
    NoCurrentContext {
        /// Which kubeconfig was read.
        origin: String,
        /// The contexts it has.
        available: Vec<String>,
    },
    /// The configuration did not make a client.
    #[error("building the Kubernetes client: {0}")]
    Build(#[from] kube::Error),
}

/// A client for the current context.
pub async fn client() -> Result<kube::Client, ClientError> {
    with_user_agent(kube::Config::infer().await?)
}

/// Which cluster a one-shot command talks to, as kubectl's `--kubeconfig` and `--context` say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeconfigSelection {
    /// The kubeconfig file; `KUBECONFIG` or `~/.kube/config` when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// The context; the kubeconfig's current context when `None`.
    pub context: Option<String>,
}

/// A client for the cluster `selection` names, the way kubectl picks it: `--kubeconfig` over
/// `KUBECONFIG` over `~/.kube/config`, `--context` over the current context. With neither flag it
/// is [`client`] (which also falls back to in-cluster configuration).
pub async fn client_for(selection: &KubeconfigSelection) -> Result<kube::Client, ClientError> {
    let (kubeconfig, origin) = match (&selection.kubeconfig, &selection.context) {
        (None, None) => return client().await,
        (Some(path), _) => (
            Kubeconfig::read_from(path).map_err(|error| ClientError::Kubeconfig {
                origin: format!("--kubeconfig {}", path.display()),
                error,
            })?,
            format!("--kubeconfig {}", path.display()),
        ),
        (None, Some(_)) => {
            let origin = default_origin();
            (
                Kubeconfig::read().map_err(|error| ClientError::Kubeconfig {
                    origin: origin.clone(),
                    error,
                })?,
                origin,
            )
        }
    };
    let available = || kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    match &selection.context {
        Some(context) if !kubeconfig.contexts.iter().any(|c| &c.name == context) => {
            return Err(ClientError::UnknownContext {
                context: context.clone(),
                origin,
                available: available(),
            });
        }
        None if kubeconfig.current_context.is_none() => {
            return Err(ClientError::NoCurrentContext {
                origin,
                available: available(),
            });
        }
        _ => {}
    }
    let options = KubeConfigOptions {
        context: selection.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|error| ClientError::Kubeconfig { origin, error })?;
    with_user_agent(config)
}

/// Where kubectl would look without `--kubeconfig`, for messages.
fn default_origin() -> String {
    match std::env::var_os("KUBECONFIG") {
        Some(paths) if !paths.is_empty() => format!("KUBECONFIG {}", Path::new(&paths).display()),
        _ => "~/.kube/config".to_string(),
    }
}

fn with_user_agent(mut config: kube::Config) -> Result<kube::Client, ClientError> {
    config
        .headers
        .push((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
    // kube retries 429, 503 and 504 itself, with delays doubling up to 1,000 s. An API server
    // that has just restarted answers 429 until its watch cache is built: a watch start retried
    // that way came back seconds after the server was ready. The same retries, at most a
    // second apart (or as long as Retry-After asks).
    config.default_retry = false;
    let retry = RetryPolicy::new(Duration::from_millis(5), RETRY_MAX_DELAY, 15, true)
        .expect("the retry delays are ordered");
    // A retry resends through a clone of the service below it: a buffer makes it cloneable.
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&tower::retry::RetryLayer::new(retry))
        .build())
}

/// The longest wait between two retries of a request the API server refused for now.
const RETRY_MAX_DELAY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig with two contexts on two namespaces; `current` names the current one.
    fn kubeconfig(current: Option<&str>) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let current = current.map_or(String::new(), |c| format!("current-context: {c}\n"));
        std::fs::write(
            file.path(),
            format!(
                "apiVersion: v1\nkind: Config\n{current}\
                 clusters:\n- name: c\n  cluster: {{server: \"https://127.0.0.1:1\"}}\n\
                 users:\n- name: u\n  user: {{token: t}}\n\
                 contexts:\n\
                 - name: dev\n  context: {{cluster: c, user: u, namespace: team-dev}}\n\
                 - name: prod\n  context: {{cluster: c, user: u, namespace: team-prod}}\n"
            ),
        )
        .unwrap();
        file
    }

    fn select(file: &tempfile::NamedTempFile, context: Option<&str>) -> KubeconfigSelection {
        KubeconfigSelection {
            kubeconfig: Some(file.path().to_path_buf()),
            context: context.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn context_picks_the_namespace_as_kubectl_does() {
        let file = kubeconfig(Some("dev"));
        let current = client_for(&select(&file, None)).await.unwrap();
        assert_eq!(current.default_namespace(), "team-dev");
        let prod = client_for(&select(&file, Some("prod"))).await.unwrap();
        assert_eq!(prod.default_namespace(), "team-prod");
    }

    #[tokio::test]
    async fn a_missing_context_is_named_with_the_ones_there_are() {
        let file = kubeconfig(Some("dev"));
        let err = client_for(&select(&file, Some("staging")))
            .await
            .err()
            .expect("an error")
            .to_string();
        assert!(
            err.starts_with("--context staging: no such context in --kubeconfig ")
                && err.contains("it has: dev, prod"),
            "{err}"
        );
        let unset = kubeconfig(None);
        let err = client_for(&select(&unset, None))
            .await
            .err()
            .expect("an error")
            .to_string();
        assert!(
            err.contains("sets no current-context; pass --context NAME (it has: dev, prod)"),
            "{err}"
        );
        let missing = KubeconfigSelection {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            context: None,
        };
        let err = client_for(&missing)
            .await
            .err()
            .expect("an error")
            .to_string();
        assert!(
            err.starts_with("--kubeconfig /nonexistent/kubeconfig: "),
            "{err}"
        );
    }
}
