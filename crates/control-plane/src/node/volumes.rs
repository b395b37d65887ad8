//! A pod's volumes, a directory each: projected tokens from the TokenRequest API, ConfigMap,
//! Secret and downward API items; other volumes are empty directories.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use super::Agent;

/// A relative path with no `..`, as the API server validates them.
pub(super) fn safe_join(dir: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(relative);
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!("refusing path {relative:?}");
    }
    Ok(dir.join(path))
}

pub(super) fn write_file(dir: &Path, relative: &str, content: &[u8]) -> anyhow::Result<()> {
    let path = safe_join(dir, relative)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))
}

/// Fills a directory per volume; volume name → directory.
pub(super) async fn prepare_volumes(
    agent: &Agent,
    pod: &Value,
    root: &Path,
) -> anyhow::Result<HashMap<String, PathBuf>> {
    let mut dirs = HashMap::new();
    for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let Some(name) = volume["name"].as_str() else {
            continue;
        };
        let dir = safe_join(&root.join("volumes"), name)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        if let Some(sources) = volume["projected"]["sources"].as_array() {
            for source in sources {
                write_source(agent, pod, source, &dir).await?;
            }
        } else {
            // configMap, secret and downwardAPI volumes are sources of their own.
            for kind in ["configMap", "secret", "downwardAPI"] {
                if volume[kind].is_object() {
                    let mut source = volume[kind].clone();
                    if kind == "secret" {
                        source["name"] = volume[kind]["secretName"].clone();
                    }
                    write_source(agent, pod, &json!({kind: source}), &dir).await?;
                }
            }
        }
        dirs.insert(name.to_string(), dir);
    }
    Ok(dirs)
}

/// Writes one projected source into `dir`.
async fn write_source(
    agent: &Agent,
    pod: &Value,
    source: &Value,
    dir: &Path,
) -> anyhow::Result<()> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let token = &source["serviceAccountToken"];
    if token.is_object() {
        let account = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        let audiences: Vec<&str> = token["audience"]
            .as_str()
            .filter(|a| !a.is_empty())
            .into_iter()
            .collect();
        let request: TokenRequest = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": audiences,
                "expirationSeconds": token["expirationSeconds"].as_i64().unwrap_or(3600),
                "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod",
                    "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
                },
            },
        }))?;
        let created: TokenRequest = Api::<ServiceAccount>::namespaced(agent.client.clone(), ns)
            .create_subresource("token", account, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {ns}/{account}"))?;
        let jwt = created.status.map(|s| s.token).unwrap_or_default();
        return write_file(
            dir,
            token["path"].as_str().unwrap_or("token"),
            jwt.as_bytes(),
        );
    }
    let items = |source: &Value| -> Vec<(String, String)> {
        source["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                Some((
                    i["key"].as_str()?.to_string(),
                    i["path"].as_str()?.to_string(),
                ))
            })
            .collect()
    };
    let config_map = &source["configMap"];
    if config_map.is_object() {
        let name = config_map["name"].as_str().unwrap_or_default();
        let data: Vec<(String, Vec<u8>)> =
            match Api::<ConfigMap>::namespaced(agent.client.clone(), ns)
                .get_opt(name)
                .await?
            {
                Some(cm) => cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .chain(
                        cm.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    )
                    .collect(),
                // No controller publishes it here: the API server's CA is what it would hold.
                None if name == "kube-root-ca.crt" => {
                    vec![("ca.crt".to_string(), agent.cluster_ca.clone().into_bytes())]
                }
                None if config_map["optional"] == true => return Ok(()),
                None => bail!("configmap {ns}/{name} not found"),
            };
        return write_items(dir, data, items(config_map));
    }
    let secret = &source["secret"];
    if secret.is_object() {
        let name = secret["name"].as_str().unwrap_or_default();
        let data: Vec<(String, Vec<u8>)> = match Api::<Secret>::namespaced(agent.client.clone(), ns)
            .get_opt(name)
            .await?
        {
            Some(s) => s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
            None if secret["optional"] == true => return Ok(()),
            None => bail!("secret {ns}/{name} not found"),
        };
        return write_items(dir, data, items(secret));
    }
    for item in source["downwardAPI"]["items"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(path) = item["path"].as_str() else {
            continue;
        };
        let metadata = &pod["metadata"];
        let map = |m: &Value| -> String {
            m.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    format!(
                        "{k}={}\n",
                        Value::String(v.as_str().unwrap_or_default().into())
                    )
                })
                .collect()
        };
        let value = match item["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => metadata["name"].as_str().unwrap_or_default().to_string(),
            Some("metadata.namespace") => ns.to_string(),
            Some("metadata.uid") => metadata["uid"].as_str().unwrap_or_default().to_string(),
            Some("metadata.labels") => map(&metadata["labels"]),
            Some("metadata.annotations") => map(&metadata["annotations"]),
            _ => String::new(),
        };
        write_file(dir, path, value.as_bytes())?;
    }
    Ok(())
}

/// Writes every key, or the listed ones at their paths.
fn write_items(
    dir: &Path,
    data: Vec<(String, Vec<u8>)>,
    items: Vec<(String, String)>,
) -> anyhow::Result<()> {
    if items.is_empty() {
        for (key, value) in &data {
            write_file(dir, key, value)?;
        }
        return Ok(());
    }
    for (key, path) in items {
        if let Some((_, value)) = data.iter().find(|(k, _)| *k == key) {
            write_file(dir, &path, value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escaping_paths() {
        assert!(safe_join(Path::new("/d"), "../x").is_err());
        assert!(safe_join(Path::new("/d"), "/x").is_err());
        assert_eq!(
            safe_join(Path::new("/d"), "a/b").unwrap(),
            PathBuf::from("/d/a/b")
        );
    }
}
