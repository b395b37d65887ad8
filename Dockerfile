# irsa-doctor container image: a static (musl) release binary on distroless, non-root.
#
#   docker build -t irsa-doctor:0.1.0 .
#   docker run --rm irsa-doctor:0.1.0 --help
#
# The final image holds the binary, CA certificates and /etc/passwd for the nonroot user
# (65532) only: no shell, no package manager. It runs with a read-only root filesystem.
# Needs BuildKit (the default builder since Docker 23) for the cache mounts. x86_64 only:
# musl-tools provides the x86_64 musl C toolchain.

FROM rust:1.95-bookworm AS build
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

FROM gcr.io/distroless/static-debian12:nonroot
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
USER 65532:65532
# /metrics, /healthz, /readyz of `irsa-doctor run`.
EXPOSE 8080
ENTRYPOINT ["/irsa-doctor"]
CMD ["run"]
