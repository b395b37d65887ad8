# Everyday commands. `make demo` shows irsa-doctor at work; `make test` is what CI runs.
CARGO ?= cargo
VENV  := .venv
ISSUER := https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE
PROVIDER := arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE

.PHONY: all build release test venv fmt lint fuzz-build bench-aws bench-kube-sim demo lint-examples crd clean

# Anything that runs the AWS SDK or CLI here gets static test credentials and no instance
# metadata, so nothing can reach for real AWS.
TEST_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" AWS_EC2_METADATA_DISABLED=true \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

all: build

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release -p irsa-doctor

# The test tools (moto, the AWS CLI) live in a virtual environment the project creates.
$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

test: venv
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

# AWS facts for 10,000 ServiceAccounts over 1,000 roles against moto, cold and warm.
bench-aws: venv
	$(TEST_ENV) $(CARGO) bench -p irsa-aws --bench resolve

# kube-sim's request rates through the real kube-rs client: 10,000 ServiceAccounts, 50,000 pods.
bench-kube-sim:
	$(CARGO) bench -p kube-sim --bench throughput

# A simulated EKS cluster (kube-sim + moto), the real operator, what a user would see.
demo: venv
	$(CARGO) build -p irsa-doctor -p kube-sim
	scripts/demo.sh

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
	rm -rf $(VENV) fuzz/target
