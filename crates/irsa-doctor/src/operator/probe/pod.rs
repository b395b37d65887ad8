//! The probe pod, built from typed Kubernetes structs: AWS's documented test (the aws-cli image
//! under the checked ServiceAccount running `aws sts get-caller-identity`) under the
//! "restricted" Pod Security Standard, owned by its IrsaCheck.

use std::collections::BTreeMap;
use std::time::Duration;

use irsa_core::probe::Injection;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::{probe_pod_name, IrsaCheck, CHECK_LABEL, PROBE_LABEL};

/// The probe's container name.
pub const CONTAINER: &str = "probe";
/// The CLI caches under $HOME; the root filesystem is read-only.
const CACHE_DIR: &str = "/home/probe";
const CACHE_VOLUME: &str = "aws-cli-cache";
/// A non-root user of the aws-cli image's distribution (nobody in distroless).
const PROBE_UID: i64 = 65532;

/// The probe's image and command (operator configuration, never the custom resource's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Image, pinned.
    pub image: String,
    /// Command, e.g. `aws sts get-caller-identity --output json`.
    pub command: Vec<String>,
    /// At most this many probe pods at once, cluster-wide.
    pub max_concurrent: usize,
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.to_string())),
        ("memory".to_string(), Quantity(memory.to_string())),
    ])
}

/// The probe pod for `check`.
pub fn probe_pod(check: &IrsaCheck, config: &ProbeConfig, timeout: Duration) -> Pod {
    let labels = BTreeMap::from([
        (PROBE_LABEL.to_string(), "true".to_string()),
        (CHECK_LABEL.to_string(), check.uid().unwrap_or_default()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "irsa-doctor".to_string(),
        ),
    ]);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(config.image.clone()),
        command: Some(config.command.clone()),
        env: Some(vec![EnvVar {
            name: "HOME".into(),
            value: Some(CACHE_DIR.into()),
            ..EnvVar::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("50m", "64Mi")),
            limits: Some(quantities("200m", "128Mi")),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: CACHE_VOLUME.into(),
            mount_path: CACHE_DIR.into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(probe_pod_name(&check.name_any())),
            labels: Some(labels),
            owner_references: check.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(check.spec.service_account_name.clone()),
            // The CLI needs no Kubernetes API access. The webhook's web identity token is a
            // projected volume of its own, which this setting does not affect.
            automount_service_account_token: Some(false),
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(
                i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX),
            ),
            termination_grace_period_seconds: Some(0),
            // Service links put every Service of the namespace in the environment; the probe
            // needs none, and the admission policy admits only what the probe needs.
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(PROBE_UID),
                run_as_group: Some(PROBE_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: CACHE_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("16Mi".into())),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// What the webhook injected, read from the pod as admitted.
pub fn injection(pod: &Pod) -> Injection {
    let spec = pod.spec.as_ref();
    let container = spec.and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER));
    let env = container.and_then(|c| c.env.as_ref());
    let var = |name: &str| env.and_then(|e| e.iter().find(|v| v.name == name));
    Injection {
        role_arn: var("AWS_ROLE_ARN").map(|v| v.value.clone().unwrap_or_default()),
        token_file: var("AWS_WEB_IDENTITY_TOKEN_FILE").is_some(),
        token_volume: spec
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|v| v.iter().any(|v| v.name == "aws-iam-token")),
        container_credentials_uri: var(irsa_core::pod_identity::FULL_URI_ENV).is_some(),
        container_token_file: var(irsa_core::pod_identity::TOKEN_FILE_ENV).is_some(),
        pod_identity_token_volume: spec.and_then(|s| s.volumes.as_ref()).is_some_and(|v| {
            v.iter()
                .any(|v| v.name == irsa_core::pod_identity::TOKEN_VOLUME)
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::IrsaCheckSpec;
    use serde_json::json;

    /// An IrsaCheck with a namespace and uid, as the API server returns one.
    pub(crate) fn check() -> IrsaCheck {
        let mut c = IrsaCheck::new(
            "s3-reader",
            serde_json::from_value::<IrsaCheckSpec>(json!({"serviceAccountName": "s3-reader"}))
                .unwrap(),
        );
        c.metadata.namespace = Some("reports".into());
        c.metadata.uid = Some("0b3f5c1e-0000-4000-8000-000000000000".into());
        c
    }

    /// The default probe configuration.
    pub(crate) fn config() -> ProbeConfig {
        ProbeConfig {
            image: "amazon/aws-cli:2.22.35".into(),
            command: vec!["aws".into(), "sts".into(), "get-caller-identity".into()],
            max_concurrent: 2,
        }
    }

    #[test]
    fn probe_pod_follows_the_restricted_profile() {
        let pod = probe_pod(&check(), &config(), Duration::from_secs(120));
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("s3-reader-irsa-probe"));
        assert_eq!(meta.labels.as_ref().unwrap()[PROBE_LABEL], "true");
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("IrsaCheck", "s3-reader", Some(true))
        );
        // The operator later deletes only pods with every mark of a probe pod.
        assert_eq!(
            crate::api::probe_pod_owner(meta).map(|o| o.uid.as_str()),
            Ok("0b3f5c1e-0000-4000-8000-000000000000")
        );
        let spec = pod.spec.unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("s3-reader"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.active_deadline_seconds, Some(120));
        let psc = spec.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("amazon/aws-cli:2.22.35"));
        assert_eq!(c.command.as_ref().unwrap()[2], "get-caller-identity");
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &["ALL".to_string()]
        );
        let resources = c.resources.as_ref().unwrap();
        assert!(resources.requests.as_ref().unwrap().contains_key("memory"));
        assert!(resources.limits.as_ref().unwrap().contains_key("cpu"));
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, CACHE_DIR);
        assert!(spec.volumes.unwrap()[0].empty_dir.is_some());
    }
}
