#!/usr/bin/env bash
# Installs Claude Code (pinned) from the npm registry into a cache directory outside the
# source tree, and prints the path of the `claude` executable on stdout.
# Idempotent: a second run with the binary in place only prints the path.
# Env: MMM_TOOLS_DIR (default: $HOME/.cache/mmm-tools), CLAUDE_CODE_VERSION (default below).
set -euo pipefail

version="${CLAUDE_CODE_VERSION:-2.1.330}"
tools_dir="${MMM_TOOLS_DIR:-${HOME:?HOME is not set}/.cache/mmm-tools}"
prefix="$tools_dir/claude-code-$version"
pkg="$prefix/node_modules/@anthropic-ai/claude-code"
bin="$pkg/bin/claude.exe"

installed_version() {
    "$bin" --version 2>/dev/null | head -n1 | awk '{print $1}'
}

if [ -x "$bin" ] && [ "$(installed_version)" = "$version" ]; then
    echo "$bin"
    exit 0
fi

command -v npm >/dev/null || {
    echo "install-claude-code: npm is not installed (apt-get install -y npm)" >&2
    exit 1
}

mkdir -p "$prefix"
echo "install-claude-code: installing @anthropic-ai/claude-code@$version into $prefix" >&2
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$version" >&2

# The postinstall links the native binary over the stub; run it again if it did not.
if [ "$(installed_version)" != "$version" ] && [ -f "$pkg/install.cjs" ]; then
    (cd "$pkg" && node install.cjs) >&2
fi

got="$(installed_version)"
if [ "$got" != "$version" ]; then
    echo "install-claude-code: $bin reports version '${got:-none}', expected $version" >&2
    exit 1
fi
echo "$bin"
