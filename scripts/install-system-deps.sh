#!/usr/bin/env bash
# System packages the tests need beyond the Python ones: Debian's `chromium`, which the
# admin dashboard's browser test drives headless. Idempotent. As root it uses apt-get; as
# anyone else `sudo -n` (never a password prompt: `make test` must not hang). Where it cannot
# install it says why and exits 0: locally the browser test then skips with that reason,
# while CI (.ci/run sets SAYBOT_REQUIRE_BROWSER=1) makes that test fail instead.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

# A `chromium` that exists but does not run (Ubuntu's snap stub, a broken install) is no
# browser: ask it for its version.
works() {
    local version
    [ -x "$1" ] && version=$(timeout 60 "$1" --version 2>/dev/null) && [[ $version == *Chromium* ]]
}

cannot() {
    echo "install-system-deps: $1, so there is no working chromium; the dashboard browser" \
        "test will skip (or fail, with SAYBOT_REQUIRE_BROWSER=1)" >&2
    exit 0
}

if works "$CHROMIUM"; then
    exit 0
fi
if [ "$(id -u)" = "0" ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root() { sudo -n "$@"; }
else
    cannot "not root and no password-less sudo"
fi
if ! command -v apt-get >/dev/null 2>&1; then
    cannot "no apt-get here"
fi
echo "install-system-deps: installing chromium with apt-get" >&2
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
if ! { apt_get update -qq && apt_get install -y -qq --no-install-recommends chromium; }; then
    cannot "apt-get could not install it"
fi
if ! works "$CHROMIUM"; then
    cannot "$CHROMIUM does not run after installing"
fi
exit 0
