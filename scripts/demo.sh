#!/usr/bin/env bash
# make demo: a simulated EKS cluster on this machine — kube-sim (API server, pod identity
# webhook, kubelet) and moto (IAM, STS) — with a few realistic IRSA setups, healthy and broken;
# the real irsa-doctor operator diagnoses them, then one is fixed and recovers. Only loopback
# is used, with static test credentials. Ends by itself and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
# The folder of the irsa-doctor and kube-sim binaries: `make demo` passes where cargo put them;
# run directly, ask cargo for its target directory (CARGO_TARGET_DIR, build.target-dir).
if [ -z "${BIN:-}" ]; then
  BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug"
fi
for exe in irsa-doctor kube-sim; do
  [ -x "$BIN/$exe" ] || { echo "make demo: $BIN/$exe is missing: run make demo, or cargo build -p irsa-doctor -p kube-sim first" >&2; exit 2; }
done
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export PATH="$PWD/.venv/bin:$PATH"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
command -v kubectl >/dev/null || { echo "make demo needs kubectl on PATH" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
http_get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "$1"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Starting a simulated EKS cluster: moto (IAM, STS) and kube-sim"
MOTO_PORT=$(free_port)
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 & PIDS+=($!)
wait_port "$MOTO_PORT"
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
"$BIN/kube-sim" serve --kubelet --kubeconfig "$WORK/kubeconfig" \
  --kubelet-env "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" --kubelet-env AWS_DEFAULT_REGION=us-east-1 \
  --kubelet-env AWS_EC2_METADATA_DISABLED=true >"$WORK/kube-sim.log" 2>&1 & PIDS+=($!)
export KUBECONFIG="$WORK/kubeconfig"
for _ in $(seq 100); do kubectl get --raw /version >/dev/null 2>&1 && break; sleep 0.1; done
ISSUER=$(kubectl get --raw /.well-known/openid-configuration | python3 -c 'import json, sys; print(json.load(sys.stdin)["issuer"])')
HOST=${ISSUER#https://}
ACCOUNT=$(aws sts get-caller-identity --query Account --output text)
echo "cluster issuer: $ISSUER    AWS account: $ACCOUNT"

trust() { # trust <namespace> <service account> <operator>
  printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::%s:oidc-provider/%s"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"%s":{"%s:sub":"system:serviceaccount:%s:%s","%s:aud":"sts.amazonaws.com"}}}]}' \
    "$ACCOUNT" "$HOST" "$3" "$HOST" "$1" "$2" "$HOST"
}

step "IAM: the cluster's OIDC provider and three roles"
aws iam create-open-id-connect-provider --url "$ISSUER" --client-id-list sts.amazonaws.com >/dev/null
aws iam create-role --role-name s3-reader --assume-role-policy-document "$(trust reports s3-reader StringEquals)" >/dev/null
aws iam create-role --role-name payment-gateway --assume-role-policy-document "$(trust payments payment-gateway StringEquals)" >/dev/null
aws iam create-role --role-name ml-training --assume-role-policy-document "$(trust ml 'training-*' StringEquals)" >/dev/null
echo "s3-reader (healthy), payment-gateway (still names the old ServiceAccount), ml-training (wildcard under StringEquals)"

step "Kubernetes: the IrsaCheck CRD, ServiceAccounts and IrsaChecks"
kubectl apply --validate=false -f crds/irsacheck.yaml >/dev/null
kubectl apply --validate=false -f - >/dev/null <<YAML
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: reports}}
- {apiVersion: v1, kind: Namespace, metadata: {name: payments}}
- {apiVersion: v1, kind: Namespace, metadata: {name: ml}}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: s3-reader, namespace: reports, annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::$ACCOUNT:role/s3-reader"}}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: payments-api, namespace: payments, annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::$ACCOUNT:role/payment-gateway"}}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: training-runner, namespace: ml, annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::$ACCOUNT:role/ml-training"}}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: notebook, namespace: ml, annotations: {eks.amazonaws.com/role_arn: "arn:aws:iam::$ACCOUNT:role/ml-training"}}
- apiVersion: irsa-doctor.io/v1alpha1
  kind: IrsaCheck
  metadata: {name: s3-reader, namespace: reports}
  spec: {serviceAccountName: s3-reader, interval: 1h, probe: {enabled: true, timeout: 1m}}
- apiVersion: irsa-doctor.io/v1alpha1
  kind: IrsaCheck
  metadata: {name: payments-api, namespace: payments}
  spec: {serviceAccountName: payments-api, interval: 1h, probe: {enabled: false}}
- apiVersion: irsa-doctor.io/v1alpha1
  kind: IrsaCheck
  metadata: {name: training-runner, namespace: ml}
  spec: {serviceAccountName: training-runner, interval: 1h, probe: {enabled: false}}
YAML
echo "3 IrsaChecks; ml/notebook has a misspelled annotation key and no IrsaCheck"

step "Starting the operator: irsa-doctor run"
METRICS_PORT=$(free_port)
"$BIN/irsa-doctor" run --leader-election=false --metrics-addr "127.0.0.1:$METRICS_PORT" \
  --sweep-interval 5s --aws-cache-ttl 1s --probe-command "aws sts get-caller-identity --output json" \
  >"$WORK/operator.log" 2>&1 & OPERATOR=$!; PIDS+=($OPERATOR)
for _ in $(seq 300); do
  [ "$(kubectl get irsachecks -A -o jsonpath='{range .items[*]}{.status.lastRunTime}{"\n"}{end}' | grep -c .)" = 3 ] && break
  sleep 0.2
done
sleep 1

step "kubectl get irsachecks -A"
kubectl get irsachecks -A
step "kubectl describe serviceaccount payments-api -n payments (Events)"
kubectl describe serviceaccount payments-api -n payments | sed -n '/^Events:/,$p'
step "kubectl describe serviceaccount notebook -n ml (no IrsaCheck: the sweep still diagnoses it)"
kubectl describe serviceaccount notebook -n ml | sed -n '/^Events:/,$p'
step "A few metric lines (GET /metrics)"
sleep 5
http_get "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^irsa_doctor_(check_ready|service_accounts|aws_calls_total)' | head -12

step "Fixing payment-gateway's trust policy (aws iam update-assume-role-policy)"
aws iam update-assume-role-policy --role-name payment-gateway --policy-document "$(trust payments payments-api StringEquals)"
sleep 1.5
# Any change to the ServiceAccount (or the next interval) re-runs its check.
kubectl label serviceaccount payments-api -n payments irsa-doctor.io/recheck=now --overwrite >/dev/null
for _ in $(seq 100); do
  [ "$(kubectl get irsacheck payments-api -n payments -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] && break
  sleep 0.2
done
kubectl get irsachecks -A
kubectl describe serviceaccount payments-api -n payments | sed -n '/^Events:/,$p'

step "Operator footprint"
echo "idle RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$OPERATOR/status")"
echo "done: stopping the operator, kube-sim and moto"
