# irsa-doctor container image: a static (musl) release binary on distroless, non-root.
#
#   docker build -t irsa-doctor:0.1.0 .
#   docker run --rm irsa-doctor:0.1.0 --help
#
# The final image holds the binary, CA certificates and /etc/passwd for the nonroot user
# (65532) only: no shell, no package manager. It runs with a read-only root filesystem.
# Needs BuildKit (the default builder since Docker 23) for the cache mounts. x86_64 only:
# musl-tools provides the x86_64 musl C toolchain.
#
# Base images. The tags are what people read; pin a build to content by appending the digest of
# each tag's multi-platform index, as it is when you build (tags such as `1.95-bookworm` and
# `nonroot` are rebuilt upstream, so a digest is a point in time, refreshed on purpose):
#
#   docker buildx imagetools inspect rust:1.95-bookworm          # "Digest: sha256:..."
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
#   docker build \
#     --build-arg RUST_IMAGE=rust:1.95-bookworm@sha256:<digest> \
#     --build-arg RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:<digest> .
#
# With a digest the registry serves exactly that content and the tag is informative only. The
# defaults below carry no digest: none could be read from the registries where this file is
# maintained, and a digest copied from elsewhere is not one to trust (docs/security.md).
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ENV TARGET=x86_64-unknown-linux-musl
# musl-gcc builds the C parts of aws-lc-sys and ring for the musl target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
WORKDIR /src
# Only what the workspace needs to build: the manifests, the lock file and the crates.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# Cache mounts keep the registry and target directory between builds; the binary is copied
# out of the cache so that it lands in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p irsa-doctor --target "${TARGET}" \
 && cp "target/${TARGET}/release/irsa-doctor" /irsa-doctor \
 && /irsa-doctor --version

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="irsa-doctor" \
      org.opencontainers.image.description="Kubernetes operator that diagnoses IAM Roles for Service Accounts (IRSA) on Amazon EKS and says how to fix what is wrong." \
      org.opencontainers.image.url="https://github.com/irsa-doctor/irsa-doctor" \
      org.opencontainers.image.source="https://github.com/irsa-doctor/irsa-doctor" \
      org.opencontainers.image.documentation="https://github.com/irsa-doctor/irsa-doctor/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="irsa-doctor" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /irsa-doctor /irsa-doctor
COPY LICENSE /licenses/LICENSE
USER 65532:65532
# /metrics, /healthz, /readyz of `irsa-doctor run`.
EXPOSE 8080
ENTRYPOINT ["/irsa-doctor"]
CMD ["run"]
