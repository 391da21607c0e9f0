#!/usr/bin/env bash
# Installs aider (pinned, PyPI `aider-chat`) into a virtual environment in a cache directory
# outside the source tree, and prints the path of the `aider` executable on stdout.
# Idempotent: a second run with the executable in place only prints the path.
# Env: MMM_TOOLS_DIR (default: $HOME/.cache/mmm-tools), AIDER_VERSION (default below),
# PYTHON (default: python3; aider 0.86 needs Python 3.10 to 3.12).
set -euo pipefail

version="${AIDER_VERSION:-0.86.2}"
tools_dir="${MMM_TOOLS_DIR:-${HOME:?HOME is not set}/.cache/mmm-tools}"
prefix="$tools_dir/aider-$version"
bin="$prefix/bin/aider"
python="${PYTHON:-python3}"

installed_version() {
    "$bin" --version 2>/dev/null | head -n1 | awk '{print $NF}'
}

if [ -x "$bin" ] && [ "$(installed_version)" = "$version" ]; then
    echo "$bin"
    exit 0
fi

command -v "$python" >/dev/null || {
    echo "install-aider: $python is not installed (apt-get install -y python3 python3-venv)" >&2
    exit 1
}

echo "install-aider: installing aider-chat==$version into $prefix" >&2
rm -rf "$prefix"
"$python" -m venv "$prefix" >&2
"$prefix/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "aider-chat==$version" >&2

got="$(installed_version)"
if [ "$got" != "$version" ]; then
    echo "install-aider: $bin reports version '${got:-none}', expected $version" >&2
    exit 1
fi
echo "$bin"
