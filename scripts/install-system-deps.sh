#!/usr/bin/env bash
# System packages the tests need beyond the Python ones: Debian's `chromium`, which the
# admin dashboard's browser test drives headless. Idempotent; never fails the build: where it
# cannot install (not root, no apt-get), it says why and that test skips with the reason.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-system-deps: not root, so not installing chromium; the dashboard browser test will skip" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get here, so not installing chromium; the dashboard browser test will skip" >&2
    exit 0
fi
echo "install-system-deps: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; then
    echo "install-system-deps: apt-get could not install chromium; the dashboard browser test will skip" >&2
fi
exit 0
