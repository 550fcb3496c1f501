#!/usr/bin/env bash
# Headless Chromium and its WebDriver (Debian packages) for the console tests
# (tests/python/test_console.py) and the screenshot script
# (tests/scripts/console_screenshots.py).
# usage:
#   chromium.sh install   apt-get install chromium chromium-driver (skipped when present)
#   chromium.sh paths     print the browser and driver paths (what the tests use)
set -euo pipefail

browser() { command -v chromium || command -v chromium-browser || true; }
driver() { command -v chromedriver || { [ -x /usr/bin/chromedriver ] && echo /usr/bin/chromedriver; } || true; }

install() {
  local missing=()
  [ -n "$(browser)" ] || missing+=(chromium)
  [ -n "$(driver)" ] || missing+=(chromium-driver)
  # Fonts for readable screenshots.
  [ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

case "${1:-}" in
  install) install ;;
  paths) echo "browser=$(browser)"; echo "driver=$(driver)" ;;
  *) echo "usage: $0 install|paths" >&2; exit 2 ;;
esac
