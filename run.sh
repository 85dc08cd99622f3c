#!/usr/bin/env bash
# CNN Explorer's one entry point for a fresh Debian/Ubuntu machine (idempotent: a second run is fast).
#   bash run.sh app [streamlit options]   install everything, then start the app
#   bash run.sh test [pytest options]     install everything plus test needs, then run the whole suite
#   bash run.sh install [--test]          only install
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV="${CNN_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1;34m[cnn-explorer]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root for: $*  (install it yourself, or run as root)"; return 1
  fi
}

apt_install() {
  # Debian packages, installed only when missing; `apt-get update` only if the first try fails.
  command -v apt-get >/dev/null 2>&1 || { say "no apt-get: please install $* yourself"; return 0; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
    as_root apt-get update -q >/dev/null 2>&1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  }
}

install_system() {
  local want_test="$1" need=()
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null || {
    say "CNN Explorer needs Python 3.10 or newer as '$PYTHON' (set PYTHON=/path/to/python3)"; exit 1; }
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  command -v dot >/dev/null 2>&1 || need+=(graphviz)
  if [ "$want_test" = 1 ] && [ ! -x /usr/bin/chromium ]; then need+=(chromium); fi
  if [ ${#need[@]} -gt 0 ]; then say "installing Debian packages: ${need[*]}"; apt_install "${need[@]}"; fi
}

install_python() {
  # Stamps say what this pyproject.toml was installed with: "test" (test needs too) also serves "app", so
  # `run.sh app` after `run.sh test` installs nothing and says nothing about installing.
  local want_test="$1" extras="" kind="app" hash
  if [ "$want_test" = 1 ]; then extras="[test,cluster]"; kind="test"; fi  # the suite runs Ray on a local head
  [ -x "$VENV/bin/python" ] || { say "creating virtual environment $VENV"; "$PYTHON" -m venv "$VENV"; }
  hash=$(sha256sum pyproject.toml | cut -c1-16)
  if [ -f "$VENV/.installed-$hash-test" ] || { [ "$kind" = app ] && [ -f "$VENV/.installed-$hash-app" ]; }; then
    return 0
  fi
  say "installing Python packages into $VENV (first time: several minutes, PyTorch is large)"
  # pip's notes about unused local package folders are noise here; real errors still stop the script
  "$VENV/bin/python" -m pip install -q --upgrade pip 2> >(grep -v "is ignored: it is neither" >&2)
  "$VENV/bin/python" -m pip install -q -e ".$extras" 2> >(grep -v "is ignored: it is neither" >&2)
  rm -f "$VENV"/.installed-*
  touch "$VENV/.installed-$hash-$kind"
}

cmd="${1:-app}"
[ $# -gt 0 ] && shift
case "$cmd" in
  install)
    want_test=0; [ "${1:-}" = "--test" ] && want_test=1
    install_system "$want_test"; install_python "$want_test" ;;
  app)
    install_system 0; install_python 0
    say "starting the app (CNN_DATA_DIR=${CNN_DATA_DIR:-./data}); open the URL below"
    # This computer only, unless told otherwise (--server.address 0.0.0.0 serves a class on the network).
    case " $* " in *" --server.address"*) ;; *) set -- --server.address 127.0.0.1 "$@" ;; esac
    exec "$VENV/bin/python" -m streamlit run app.py "$@" ;;
  test)
    install_system 1; install_python 1
    say "running the test suite (CNN_DATA_DIR=${CNN_DATA_DIR:-unset: real-data tests skip})"
    exec "$VENV/bin/python" -m pytest "$@" ;;
  *)
    echo "usage: bash run.sh {app|test|install [--test]} [options]" >&2; exit 2 ;;
esac
