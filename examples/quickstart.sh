#!/usr/bin/env bash
# The main job on an embedded default: a dry-run sync of the example signed feed shipped in
# examples/feed/ (CERT Santé (example), signed with examples/keys/example.key). Prints the plan
# and renders the nftables script and the RPZ zone into a temp directory. Changes nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/blocklist-agent-example.XXXXXX)}
mkdir -p "$work"
cat > "$work/agent.yaml" <<YAML
state_dir: state
local_dir: local.d
feeds:
  - name: cert-sante-example
    url: file://$root/examples/feed/manifest.json
    trusted_keys: [$root/examples/keys/example.pub]
guards:
  protected: [10.0.0.0/8, chu-example.fr, sante.fr, gouv.fr]
  # the example uses documentation ranges (RFC 5737/3849) as if they were the internet
  allow_special: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
firewall:
  backend: none
dns:
  backend: none
YAML
"$root/.venv/bin/python" -m agent -c "$work/agent.yaml" sync --dry-run --render-to "$work/out"
echo
echo "config: $work/agent.yaml; try: $root/.venv/bin/python -m agent -c $work/agent.yaml --help"
