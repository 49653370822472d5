#!/bin/sh
# The system tools some tests run, which only a Debian package gives.
#   test-tools.sh install   installs the missing ones (needs root; CI runs it), starting and
#                           enabling no service
#   test-tools.sh report    names the missing ones and the command that installs them
# The tests that need a missing tool are skipped with that reason, except under CI, where they
# fail (tests/tools.py).
set -eu

# tool:package. prometheus is the only Debian package that ships promtool; chromium is the
# browser the status page's tests drive (Playwright, never a browser download).
TOOLS="promtool:prometheus systemd-analyze:systemd curl:curl chromium:chromium"

missing=""
packages=""
for pair in $TOOLS; do
    tool=${pair%%:*}
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing="$missing $tool"
        packages="$packages ${pair#*:}"
    fi
done
[ -n "$missing" ] || exit 0

if [ "${1:-}" != install ]; then
    echo "not installed:$missing; the tests that need them are skipped (to run them: sudo make tools)"
    exit 0
fi

# invoke-rc.d asks policy-rc.d before it starts a service: 101 means "not allowed", so a
# package's postinst installs its service without starting it.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages
# The postinst enabled prometheus's service (to start at the next boot): promtool is all the
# tests want. (deb-systemd-helper works only from a maintainer script; systemctl works offline.)
case " $packages " in
*" prometheus "*)
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --quiet prometheus.service 2>/dev/null || true
    fi
    ;;
esac
