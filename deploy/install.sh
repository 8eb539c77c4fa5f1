#!/usr/bin/env bash
# Install llm-proxy as a systemd service from this checkout (design §10), or remove it.
#
#   sudo deploy/install.sh                        install, or upgrade in place (run it again)
#   sudo deploy/install.sh --uninstall            stop and remove the service and /opt/llm-proxy;
#                                                 keep /etc/llm-proxy and the database
#   sudo deploy/install.sh --uninstall --purge    remove those too
#
# What it puts where (each overridable from the environment, for packaging and for tests):
#   LLM_PROXY_PREFIX  /opt/llm-proxy            the program: a venv in $LLM_PROXY_PREFIX/venv
#   ETC_DIR           /etc/llm-proxy            config.toml (only when absent: never overwritten),
#                                               config.example.toml, credentials/ (0700)
#   SYSTEMD_DIR       /etc/systemd/system       llm-proxy.service
#   STATE_DIR         /var/lib/llm-proxy        the database (made by systemd; --purge removes it)
#   PYTHON            python3                   the interpreter of the venv (3.11 or newer)
#   SKIP_SYSTEMCTL=1                            do not call systemctl (containers, tests)
#
# Running it twice is harmless: the venv is reused and the package reinstalled, the config and
# credentials are kept, and the service is restarted onto the new code.
set -euo pipefail

readonly UNIT=llm-proxy.service
readonly PROVIDERS=(openai gemini deepseek grok anthropic)

SOURCE_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${LLM_PROXY_PREFIX:-/opt/llm-proxy}
ETC_DIR=${ETC_DIR:-/etc/llm-proxy}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
STATE_DIR=${STATE_DIR:-/var/lib/llm-proxy}
PYTHON=${PYTHON:-python3}
SKIP_SYSTEMCTL=${SKIP_SYSTEMCTL:-0}
VENV=$PREFIX/venv

say() { printf 'llm-proxy: %s\n' "$*"; }
die() {
	printf 'llm-proxy: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# True when systemctl can talk to a running systemd (not in most containers, nor when skipped).
have_systemd() {
	[[ $SKIP_SYSTEMCTL != 1 ]] && command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]
}

# Refuse paths that would make `rm -rf` dangerous.
check_path() {
	case $1 in
	"" | / | /etc | /opt | /usr | /var | /var/lib) die "refusing to use '$1' as an install path" ;;
	/*) ;;
	*) die "install paths must be absolute, got '$1'" ;;
	esac
}

install_venv() {
	"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
		die "$PYTHON is older than Python 3.11 (set PYTHON=/path/to/python3.11)"
	# A venv whose interpreter vanished (a Python upgrade) is rebuilt.
	if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
		rm -rf -- "$VENV"
		"$PYTHON" -m venv "$VENV" ||
			die "cannot create a venv (on Debian and Ubuntu: apt-get install python3-venv)"
	fi
	say "installing the package from $SOURCE_DIR into $VENV"
	# Build from a clean copy: setuptools reuses the checkout's build/ directory, which would
	# bring back modules deleted since (and the checkout stays untouched).
	local build
	build=$(mktemp -d)
	# shellcheck disable=SC2064 # expand now: the variable is local
	trap "rm -rf -- '$build'" EXIT
	tar -C "$SOURCE_DIR" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
		--exclude=__pycache__ --exclude=./tests --exclude='*.db' --exclude='*.db-*' -cf - . |
		tar -C "$build" -xf -
	# --upgrade reinstalls the checkout even when its version number did not change.
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$build"
	rm -rf -- "$build"
	trap - EXIT
	install -m 0644 "$SOURCE_DIR/README.md" "$PREFIX/README.md"
}

install_config() {
	install -d -m 0755 "$ETC_DIR"
	install -m 0644 "$SOURCE_DIR/deploy/config.example.toml" "$ETC_DIR/config.example.toml"
	if [[ -e $ETC_DIR/config.toml ]]; then
		say "keeping $ETC_DIR/config.toml (the new example is $ETC_DIR/config.example.toml)"
	else
		install -m 0644 "$SOURCE_DIR/deploy/config.example.toml" "$ETC_DIR/config.toml"
		say "created $ETC_DIR/config.toml"
	fi
	# Keys live here, root only; the unit hands them over with LoadCredential=, which fails the
	# unit when a file is missing, so each provider gets one (empty means "no key").
	install -d -m 0700 "$ETC_DIR/credentials"
	chmod 0700 "$ETC_DIR/credentials"
	local name file
	# redis_url: the fleet's Redis URL when it holds a password ([cluster] redis_url);
	# storage_url: likewise the PostgreSQL URL ([storage] url).
	for name in "${PROVIDERS[@]/%/_api_key}" redis_url storage_url; do
		file=$ETC_DIR/credentials/$name
		[[ -e $file ]] || install -m 0600 /dev/null "$file"
	done
	# The config must be valid before the service is (re)started onto it.
	CREDENTIALS_DIRECTORY=$ETC_DIR/credentials STATE_DIRECTORY=$STATE_DIR \
		"$VENV/bin/llm-proxy" check-config --config "$ETC_DIR/config.toml" >/dev/null ||
		die "$ETC_DIR/config.toml is not valid (see above); the service was not (re)started"
}

install_unit() {
	install -d -m 0755 "$SYSTEMD_DIR"
	local unit
	unit=$(mktemp)
	# The unit names the default paths; follow any override.
	sed -e "s|/opt/llm-proxy|$PREFIX|g" -e "s|/etc/llm-proxy|$ETC_DIR|g" \
		"$SOURCE_DIR/deploy/$UNIT" >"$unit"
	install -m 0644 "$unit" "$SYSTEMD_DIR/$UNIT"
	rm -f -- "$unit"
	if have_systemd; then
		systemctl daemon-reload
		systemctl enable --quiet "$UNIT"
		# restart: start it, or move a running one onto the new code
		systemctl restart "$UNIT"
		say "started $UNIT: systemctl status llm-proxy; journalctl -u llm-proxy -f"
	else
		say "systemd is not running here (or SKIP_SYSTEMCTL=1): the unit is installed but not" \
			"started; on a systemd host run: systemctl daemon-reload && systemctl enable --now $UNIT"
	fi
}

do_install() {
	check_path "$PREFIX"
	check_path "$ETC_DIR"
	check_path "$SYSTEMD_DIR"
	install -d -m 0755 "$PREFIX"
	install_venv
	install_config
	install_unit
	cat <<EOF
llm-proxy: installed.
  config       $ETC_DIR/config.toml  (check it: $VENV/bin/llm-proxy check-config --config $ETC_DIR/config.toml)
  API keys     write a provider's key into $ETC_DIR/credentials/<provider>_api_key
               (openai, gemini, deepseek, grok, anthropic), then: systemctl restart llm-proxy
  redis        a fleet's Redis URL with its password: $ETC_DIR/credentials/redis_url
  postgresql   a shared database's URL with its password: $ETC_DIR/credentials/storage_url
  database     $STATE_DIR/llm-proxy.db; the first admin password is in
               $STATE_DIR/llm-proxy-initial-admin-password after the first start
  client keys  $VENV/bin/llm-proxy clients create NAME --config $ETC_DIR/config.toml --database $STATE_DIR/llm-proxy.db
EOF
}

do_uninstall() {
	local purge=$1
	check_path "$PREFIX"
	check_path "$ETC_DIR"
	check_path "$SYSTEMD_DIR"
	check_path "$STATE_DIR"
	if have_systemd; then
		systemctl disable --now --quiet "$UNIT" 2>/dev/null || true
	fi
	rm -f -- "$SYSTEMD_DIR/$UNIT"
	if have_systemd; then
		systemctl daemon-reload
		systemctl reset-failed "$UNIT" 2>/dev/null || true
	fi
	rm -rf -- "$PREFIX"
	say "removed $UNIT and $PREFIX"
	if [[ $purge == 1 ]]; then
		# DynamicUser= keeps the state in /var/lib/private/llm-proxy behind a symlink.
		rm -rf -- "$ETC_DIR" "$STATE_DIR" "$(dirname -- "$STATE_DIR")/private/$(basename -- "$STATE_DIR")" \
			"$SYSTEMD_DIR/$UNIT.d"
		say "purged $ETC_DIR and $STATE_DIR"
	else
		say "kept $ETC_DIR and $STATE_DIR (remove them with --uninstall --purge)"
	fi
}

main() {
	local action=install purge=0
	while (($#)); do
		case $1 in
		--uninstall) action=uninstall ;;
		--purge) purge=1 ;;
		-h | --help)
			usage
			return 0
			;;
		*) die "unknown argument '$1' (see --help)" ;;
		esac
		shift
	done
	[[ $purge == 0 || $action == uninstall ]] || die "--purge goes with --uninstall"
	if [[ $EUID -ne 0 && -z ${LLM_PROXY_PREFIX:-} ]]; then
		die "run it as root (sudo), or set LLM_PROXY_PREFIX and the other paths"
	fi
	if [[ $action == install ]]; then
		do_install
	else
		do_uninstall "$purge"
	fi
}

main "$@"
