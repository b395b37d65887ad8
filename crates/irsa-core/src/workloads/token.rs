//! Whether a container can read its projected token, by the kubelet's rules for projected
//! service account tokens (KEP-2451, Kubernetes 1.19+): with `fsGroup`, mode 0600 plus group read
//! for the fsGroup (0640); without, when every container runs as the same explicit `runAsUser`,
//! 0600 owned by it; otherwise the volume's `defaultMode` (0644 unless set), owned by root.

use super::{Mechanism, PodFacts};

/// The containers of `pod` that cannot read the token `mechanism` gives them, in messages.
pub(super) fn unreadable(pod: &PodFacts, mechanism: Mechanism) -> Vec<String> {
    let mut out = Vec::new();
    if pod.fs_group.is_some() {
        return out;
    }
    let users: Vec<Option<i64>> = pod
        .containers
        .iter()
        .map(|c| c.run_as_user.or(pod.run_as_user))
        .collect();
    if users
        .first()
        .is_some_and(|u| u.is_some() && users.iter().all(|v| v == u))
    {
        return out;
    }
    let [_, token_env] = mechanism.variables();
    for v in &pod.token_volumes {
        let mode = v.default_mode.unwrap_or(0o644);
        for c in &pod.containers {
            let Some((_, path)) = c.mounts.iter().find(|(n, _)| *n == v.name) else {
                continue;
            };
            let ours = v.name == mechanism.volume()
                || path.starts_with(mechanism.mount_dir())
                || c.env
                    .get(token_env)
                    .and_then(Option::as_deref)
                    .is_some_and(|f| f.starts_with(path.as_str()));
            let uid = c.run_as_user.or(pod.run_as_user);
            if let Some(uid) = uid.filter(|u| ours && *u != 0 && mode & 0o004 == 0) {
                out.push(format!(
                    "{} container {} runs as uid {uid} but token volume {} is mode {mode:04o} owned by root \
                     (no fsGroup, and the containers do not share one runAsUser)",
                    pod.describe(),
                    c.name,
                    v.name,
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{ContainerFacts, TokenVolume, TOKEN_DIR, TOKEN_VOLUME};

    fn container(name: &str, volume: &str, dir: &str) -> ContainerFacts {
        ContainerFacts {
            name: name.into(),
            mounts: vec![(volume.into(), dir.into())],
            ..Default::default()
        }
    }

    fn pod(volume: &str, dir: &str) -> PodFacts {
        PodFacts {
            name: "p".into(),
            admitted: true,
            containers: vec![container("a", volume, dir), container("b", volume, dir)],
            token_volumes: vec![TokenVolume {
                name: volume.into(),
                default_mode: Some(0o600),
            }],
            run_as_user: Some(1000),
            ..Default::default()
        }
    }

    #[test]
    fn follows_the_kubelet_for_either_mechanisms_volume() {
        for (m, volume, dir) in [
            (Mechanism::Irsa, TOKEN_VOLUME, TOKEN_DIR),
            (
                Mechanism::PodIdentity,
                crate::pod_identity::TOKEN_VOLUME,
                crate::pod_identity::TOKEN_DIR,
            ),
        ] {
            let mut p = pod(volume, dir);
            // Same runAsUser everywhere: 0600 owned by it.
            assert!(unreadable(&p, m).is_empty());
            // Different users, no fsGroup: root-owned 0600.
            p.containers[1].run_as_user = Some(2000);
            assert_eq!(unreadable(&p, m).len(), 2, "{m:?}");
            // The other mechanism's token is not this one's concern.
            assert!(unreadable(&p, m.other()).is_empty());
            p.fs_group = Some(3000);
            assert!(unreadable(&p, m).is_empty());
            // The default 0644 is readable by anyone.
            p.fs_group = None;
            p.token_volumes[0].default_mode = None;
            assert!(unreadable(&p, m).is_empty());
        }
    }
}
