#!/usr/bin/env bash
# Installs what the tests need (make test, .ci/run) on Debian 12 with Go:
# the commands below, from Debian's packages. Prints nothing when all of
# them are there. Run by hand, it lists what is missing and asks before
# installing; under CI=true it installs without asking. staticcheck is not
# here: it is a Go tool dependency in go.mod (go tool staticcheck).
set -euo pipefail

# command the tests run (or, starting with /, a file they need), then the
# Debian package(s) that bring it
needs=(
  "gcc       gcc libc6-dev"
  "/usr/include/openssl/hmac.h libssl-dev"
  "python3   python3"
  "/usr/lib/python3/dist-packages/cryptography/__init__.py python3-cryptography"
  "socat     socat"
  "ip        iproute2"
  "setpriv   util-linux"
  "make      make"
  "nft       nftables"
  "ethtool   ethtool"
  "conntrack conntrack"
  "promtool  prometheus"
  "systemd-analyze systemd"
  "systemd-sysusers systemd"
  "groff     groff-base"
  "man       man-db"
  "strace    strace"
  "tshark    tshark"
  "nats-server nats-server"
)

missing=()
for line in "${needs[@]}"; do
  read -r cmd pkgs <<<"$line"
  if [[ $cmd == /* ]] && [ -e "$cmd" ]; then continue; fi
  if [[ $cmd == /* ]] || ! command -v "$cmd" >/dev/null 2>&1; then
    read -r -a p <<<"$pkgs"
    missing+=("${p[@]}")
  fi
done
((${#missing[@]})) || exit 0

apt_install=(apt-get install -y -qq --no-install-recommends "${missing[@]}")
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: install them as root with:" >&2
  echo "  sudo apt-get update && sudo ${apt_install[*]}" >&2
  exit 1
fi

if [ "${CI:-}" != true ]; then
  echo "deps: missing packages: ${missing[*]}" >&2
  answer=
  if [ -t 0 ]; then
    read -r -p "deps: install them with apt-get now? [y/N] " answer || true
  elif (: </dev/tty) 2>/dev/null; then
    read -r -p "deps: install them with apt-get now? [y/N] " answer </dev/tty || true
  else
    echo "deps: no terminal to ask on; install them with:" >&2
    echo "  apt-get update && ${apt_install[*]}" >&2
    exit 1
  fi
  case "$answer" in
    [yY] | [yY][eE][sS]) ;;
    *)
      echo "deps: not installed; install them with:" >&2
      echo "  apt-get update && ${apt_install[*]}" >&2
      exit 1
      ;;
  esac
fi

echo "deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${apt_install[@]}"
