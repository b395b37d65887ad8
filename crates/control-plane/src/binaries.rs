//! Where the control plane's binaries are: `.tools/bin` of the workspace (`make control-plane`
//! builds them there), or the folder named by `CONTROL_PLANE_BIN`.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The control plane's executables.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd.
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// kube-controller-manager.
    pub kube_controller_manager: PathBuf,
}

impl Binaries {
    /// Finds every binary, or says how to build them.
    pub fn locate() -> anyhow::Result<Binaries> {
        let dir = std::env::var_os("CONTROL_PLANE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin"));
        let find = |name: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} is missing: build the control plane with `make control-plane` (or set CONTROL_PLANE_BIN)",
                    path.display()
                );
            }
            Ok(path)
        };
        Ok(Binaries {
            etcd: find("etcd")?,
            kube_apiserver: find("kube-apiserver")?,
            kube_controller_manager: find("kube-controller-manager")?,
        })
    }
}
