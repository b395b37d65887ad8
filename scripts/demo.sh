#!/usr/bin/env bash
# make demo: a local cluster shaped like EKS — the real etcd, kube-apiserver and
# kube-controller-manager, one node that runs pods as local processes, the pod identity webhook's
# emulation, the EKS Pod Identity API stand-in and moto (IAM, STS), all from `local-cluster` —
# with a few realistic IRSA and Pod Identity setups, healthy and broken. The chart is installed
# with `helm install` and runs as its Deployment; what a user sees follows, then one setup is
# fixed and recovers. Only loopback is used, with static test credentials. Ends by itself and
# cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
# The folder of the irsa-doctor and local-cluster binaries: `make demo` passes where cargo put
# them; run directly, ask cargo for its target directory (CARGO_TARGET_DIR, build.target-dir).
if [ -z "${BIN:-}" ]; then
  BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug"
fi
for exe in irsa-doctor local-cluster; do
  [ -x "$BIN/$exe" ] || { echo "make demo: $BIN/$exe is missing: run make demo, or cargo build -p irsa-doctor -p control-plane first" >&2; exit 2; }
done
export PATH="$PWD/.venv/bin:$PWD/.tools/bin:$PATH"
for tool in kubectl helm aws moto_server kube-apiserver; do
  command -v "$tool" >/dev/null || { echo "make demo needs $tool: run make venv tools control-plane" >&2; exit 2; }
done
WORK=$(mktemp -d)
CLUSTER=""
cleanup() {
  if [ -n "$CLUSTER" ]; then
    helm uninstall irsa-doctor -n irsa-doctor --wait >/dev/null 2>&1 || true
    kill -INT "$CLUSTER" 2>/dev/null || true
    wait "$CLUSTER" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
START=$(date +%s)

step "Starting a local EKS-shaped cluster: local-cluster --moto"
"$BIN/local-cluster" --moto --image "ghcr.io/irsa-doctor/irsa-doctor=$BIN/irsa-doctor" \
  --env-file "$WORK/env" >"$WORK/cluster.log" 2>&1 & CLUSTER=$!
for _ in $(seq 600); do
  [ -s "$WORK/env" ] && break
  kill -0 "$CLUSTER" 2>/dev/null || { cat "$WORK/cluster.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$WORK/env" ] || { cat "$WORK/cluster.log" >&2; echo "the cluster did not start within 60 s" >&2; exit 1; }
# shellcheck disable=SC1091
source "$WORK/env"
export AWS_PAGER=""
ISSUER=$(kubectl get --raw /.well-known/openid-configuration | python3 -c 'import json, sys; print(json.load(sys.stdin)["issuer"])')
HOST=${ISSUER#https://}
ACCOUNT=$(aws sts get-caller-identity --query Account --output text)
kubectl get nodes
echo "cluster issuer: $ISSUER    AWS account: $ACCOUNT    EKS cluster: local"

trust() { # trust <namespace> <service account> <operator>
  printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::%s:oidc-provider/%s"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"%s":{"%s:sub":"system:serviceaccount:%s:%s","%s:aud":"sts.amazonaws.com"}}}]}' \
    "$ACCOUNT" "$HOST" "$3" "$HOST" "$1" "$2" "$HOST"
}
POD_IDENTITY_TRUST='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}'

step "IAM: the cluster's OIDC provider, the operator's role and four roles to diagnose"
aws iam create-open-id-connect-provider --url "$ISSUER" --client-id-list sts.amazonaws.com >/dev/null
# The operator's own identity is IRSA, as on EKS (deploy/iam-policy.json is what it needs).
aws iam create-role --role-name irsa-doctor --assume-role-policy-document "$(trust irsa-doctor irsa-doctor StringEquals)" >/dev/null
aws iam create-role --role-name s3-reader --assume-role-policy-document "$(trust reports s3-reader StringEquals)" >/dev/null
aws iam create-role --role-name payment-gateway --assume-role-policy-document "$(trust payments payment-gateway StringEquals)" >/dev/null
aws iam create-role --role-name ml-training --assume-role-policy-document "$(trust ml 'training-*' StringEquals)" >/dev/null
aws iam create-role --role-name ledger-writer --assume-role-policy-document "$POD_IDENTITY_TRUST" >/dev/null
echo "s3-reader (healthy), payment-gateway (still names the old ServiceAccount), ml-training (wildcard under StringEquals), ledger-writer (EKS Pod Identity)"

step "EKS: a Pod Identity association (aws eks create-pod-identity-association)"
aws eks create-pod-identity-association --cluster-name local --namespace ledger --service-account ledger-writer \
  --role-arn "arn:aws:iam::$ACCOUNT:role/ledger-writer" --query 'association.[namespace,serviceAccount,roleArn]' --output text

step "Kubernetes: namespaces and ServiceAccounts"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: reports}}
- {apiVersion: v1, kind: Namespace, metadata: {name: payments}}
- {apiVersion: v1, kind: Namespace, metadata: {name: ml}}
- {apiVersion: v1, kind: Namespace, metadata: {name: ledger}}
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
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: ledger-writer, namespace: ledger}
YAML

step "helm install irsa-doctor charts/irsa-doctor (2 replicas, one leader)"
kubectl apply --server-side -f crates/irsa-doctor/tests/data/policyreport-crd.yaml >/dev/null
# Every pod here shares the host's network with a loopback address of its own, so each replica
# listens on its pod IP; the EKS cluster name lets the operator list Pod Identity associations.
helm install irsa-doctor charts/irsa-doctor --namespace irsa-doctor --create-namespace \
  --set 'service.listenAddress=$(POD_IP)' --set clusterName=local \
  --set "serviceAccount.roleArn=arn:aws:iam::$ACCOUNT:role/irsa-doctor" --set sweepInterval=15s \
  --set aws.cacheTTL=2s --set logFormat=text | sed -n '1,6p'
kubectl rollout status deployment/irsa-doctor -n irsa-doctor --timeout=120s
kubectl get pods -n irsa-doctor -o wide
echo "leader: $(kubectl get lease -n irsa-doctor -o jsonpath='{.items[0].spec.holderIdentity}')"


step "IrsaChecks"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: List
items:
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
- apiVersion: irsa-doctor.io/v1alpha1
  kind: IrsaCheck
  metadata: {name: ledger-writer, namespace: ledger}
  spec: {serviceAccountName: ledger-writer, interval: 1h, probe: {enabled: false}}
YAML
echo "4 IrsaChecks; ml/notebook has a misspelled annotation key and no IrsaCheck"
for _ in $(seq 600); do
  [ "$(kubectl get irsachecks -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="ProbeSucceeded")].reason}{"\n"}{end}' | grep -vc '^ProbePending$')" = 4 ] \
    && [ "$(kubectl get irsachecks -A -o jsonpath='{range .items[*]}{.status.lastRunTime}{"\n"}{end}' | grep -c .)" = 4 ] && break
  sleep 0.2
done

step "kubectl get irsachecks -A"
kubectl get irsachecks -A
step "kubectl describe serviceaccount payments-api -n payments (Events)"
kubectl describe serviceaccount payments-api -n payments | sed -n '/^Events:/,$p'
step "kubectl describe serviceaccount notebook -n ml (no IrsaCheck: the sweep still diagnoses it)"
for _ in $(seq 150); do
  kubectl get events -n ml --field-selector involvedObject.name=notebook -o name | grep -q . && break
  sleep 0.2
done
kubectl describe serviceaccount notebook -n ml | sed -n '/^Events:/,$p'
step "kubectl get policyreports -A"
for _ in $(seq 150); do
  [ "$(kubectl get policyreports -A -o name | grep -c .)" -ge 4 ] && break
  sleep 0.2
done
kubectl get policyreports -A
step "A few metric lines (GET http://<leader pod IP>:8080/metrics)"
LEADER=$(kubectl get lease -n irsa-doctor -o jsonpath='{.items[0].spec.holderIdentity}')
POD_IP=$(kubectl get pod "$LEADER" -n irsa-doctor -o jsonpath='{.status.podIP}')
python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "http://$POD_IP:8080/metrics" \
  | grep -E '^irsa_doctor_(check_ready|service_accounts|aws_calls_total)' | head -12

step "Fixing payment-gateway's trust policy (aws iam update-assume-role-policy)"
aws iam update-assume-role-policy --role-name payment-gateway --policy-document "$(trust payments payments-api StringEquals)"
sleep 2.5
# A change to the ServiceAccount's annotations (or the next interval) re-runs its check.
kubectl annotate serviceaccount payments-api -n payments "irsa-doctor.io/recheck=$(date +%s)" --overwrite >/dev/null
for _ in $(seq 150); do
  [ "$(kubectl get irsacheck payments-api -n payments -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] && break
  sleep 0.2
done
kubectl get irsachecks -A
kubectl describe serviceaccount payments-api -n payments | sed -n '/^Events:/,$p'

step "Operator footprint"
for p in $(pgrep -f "$BIN/irsa-doctor run" || true); do echo "replica pid $p RSS: $(awk '/VmRSS/ {print $2, $3}' "/proc/$p/status")"; done
step "helm uninstall irsa-doctor; stopping the cluster (demo took $(( $(date +%s) - START )) s)"
