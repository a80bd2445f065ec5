#!/usr/bin/env bash
# Build dist/blocklist-agent_<version>_all.deb with debhelper + dh-python (`make deb`).
#
# The Debian directory lives in packaging/deb/ so that the repository root stays a plain Python
# project; this script assembles a clean source tree in a temp dir (the files the package needs,
# with packaging/deb/ as debian/), runs dpkg-buildpackage there and copies the .deb to dist/.
# Needs the build dependencies of packaging/deb/control (scripts/install-deps.sh installs them).
# Set LINTIAN=1 to also run lintian on the result (it fails on errors).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/agent/__init__.py")
changelog=$(sed -n '1s/^blocklist-agent (\([^)]*\)).*/\1/p' "$root/packaging/deb/changelog")
if [ "$version" != "$changelog" ]; then
    echo "build-deb: agent/__init__.py says $version but packaging/deb/changelog says" \
         "$changelog; add a changelog entry for $version" >&2
    exit 1
fi

work=$(mktemp -d /tmp/blocklist-agent-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src="$work/blocklist-agent-$version"
mkdir -p "$src"
tar -C "$root" --exclude=__pycache__ --exclude='*.pyc' -cf - \
    agent pyproject.toml README.md config/agent.yaml examples/feed packaging \
    | tar -C "$src" -xf -
cp -a "$root/packaging/deb" "$src/debian"

# SOURCE_DATE_EPOCH comes from debian/changelog: reproducible dates in the manual page. The
# system PATH only: a pyenv or virtualenv python must not stand in for Debian's python3.
(cd "$src" && env -u PYTHONPATH -u VIRTUAL_ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -b -us -uc --no-sign >"$work/build.log" 2>&1) || {
    tail -n 60 "$work/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed (last lines above)" >&2
    exit 1
}
mkdir -p "$root/dist"
deb="blocklist-agent_${version}_all.deb"
cp "$work/$deb" "$root/dist/$deb"
echo "build-deb: dist/$deb"
if [ "${LINTIAN:-0}" = 1 ]; then
    lintian --fail-on error --info "$root/dist/$deb"
fi
