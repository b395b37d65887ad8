#!/usr/bin/env python3
"""Fills deploy/krew/irsa-doctor.yaml for one release (`make krew-manifest`).

Usage: render-manifest.py VERSION DIST

VERSION is the release without the `v` (0.1.0); DIST is the folder holding the four release
archives irsa-doctor-vVERSION-OS-ARCH.tar.gz (OS linux or darwin, ARCH amd64 or arm64), each
with kubectl-irsa_doctor and LICENSE at its top level, as the manifest's `files` name them. Writes DIST/irsa-doctor.yaml and prints its path.
"""
import hashlib
import pathlib
import re
import sys
import tarfile

PLATFORMS = [(os, arch) for os in ("linux", "darwin") for arch in ("amd64", "arm64")]
# What krew copies out of each archive (the manifest's `files`).
MEMBERS = ("kubectl-irsa_doctor", "LICENSE")


def members(archive):
    """The file names at the top of a .tar.gz; exits naming the archive when it is not one."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError) as e:
        sys.exit(f"krew-manifest: {archive} is not a .tar.gz archive: {e}")


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: render-manifest.py VERSION DIST (make krew-manifest VERSION=0.1.0 KREW_DIST=dist)")
    version, dist = argv[1], pathlib.Path(argv[2])
    # krew wants a semantic version; the manifest adds the `v`.
    if not re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", version):
        sys.exit(f"krew-manifest: VERSION={version!r} is not a version such as 0.1.0 (without the v)")
    template = pathlib.Path(__file__).with_name("irsa-doctor.yaml")
    # The template's leading comment is about the template; the index gets the manifest alone.
    lines = template.read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    text = "".join(lines).replace("{{VERSION}}", version)
    for os, arch in PLATFORMS:
        archive = dist / f"irsa-doctor-v{version}-{os}-{arch}.tar.gz"
        if not archive.is_file():
            sys.exit(
                f"krew-manifest: {archive} is missing: put the {os}/{arch} release archive "
                f"(holding kubectl-irsa_doctor) there, or set KREW_DIST to its folder"
            )
        missing = [m for m in MEMBERS if m not in members(archive)]
        if missing:
            sys.exit(f"krew-manifest: {archive} lacks {', '.join(missing)}: krew installs {' and '.join(MEMBERS)} from it")
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        text = text.replace(f"{{{{SHA256_{os.upper()}_{arch.upper()}}}}}", digest)
    left = sorted(set(re.findall(r"\{\{[A-Z0-9_]+\}\}", text)))
    if left:
        sys.exit(f"krew-manifest: {template} has placeholders this script does not fill: {', '.join(left)}")
    out = dist / "irsa-doctor.yaml"
    out.write_text(text)
    print(out)


if __name__ == "__main__":
    main(sys.argv)
