#!/usr/bin/env bash
# Checks the Kubernetes manifests in docs/deploy/kubernetes/ and the fleet
# compose file, with tools from Debian and npm only:
#   1. yamllint (Debian) on every file, warnings included;
#   2. validate.js: each object against the Kubernetes OpenAPI schemas
#      shipped by the npm package kubernetes-models (pinned), unknown fields
#      rejected (like kubeconform -strict), then ntsd's own rules (0400
#      Secret mounts, no SYS_TIME, ntsctl health probes, ...);
#   3. docker-compose config, when docker-compose is installed.
# Exit status 0 only if everything passed.
# Usage: tests/k8s/validate.sh          (K8S_VALIDATE_CACHE: npm directory)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/deps.sh
command -v yamllint >/dev/null || deps_install yamllint
# Debian's nodejs and npm, unless a node with npm is already there.
{ command -v node && command -v npm; } >/dev/null || deps_install nodejs npm

KUBERNETES_MODELS=4.5.1 # node >= 14: Debian 12's nodejs 18 is enough
YAML_JS=2.9.1
cache=${K8S_VALIDATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ntsntp-k8s-validate}
want="kubernetes-models@$KUBERNETES_MODELS yaml@$YAML_JS"
if [ "$(cat "$cache/installed" 2>/dev/null)" != "$want" ]; then
  rm -rf "$cache" && mkdir -p "$cache"
  # shellcheck disable=SC2086
  (cd "$cache" && npm install --no-audit --no-fund --no-save --silent $want) ||
    { echo "validate.sh: npm install $want failed"; exit 1; }
  echo "$want" > "$cache/installed"
fi

manifests=(docs/deploy/kubernetes/*.yaml)
rc=0
echo "== yamllint"
yamllint -s -c tests/k8s/yamllint.yml "${manifests[@]}" docker-compose.fleet.yml || rc=1
echo "== Kubernetes schemas (kubernetes-models $KUBERNETES_MODELS) and ntsd rules"
NODE_PATH="$cache/node_modules" node tests/k8s/validate.js "${manifests[@]}" || rc=1
if command -v docker-compose >/dev/null; then
  echo "== docker-compose config"
  NTS_DOMAIN=example.org docker-compose -f docker-compose.fleet.yml config -q || rc=1
fi
[ $rc -eq 0 ] && echo "Kubernetes manifests and compose file: valid" ||
  echo "validate.sh: problems above"
exit $rc
