# Shared by the MongoDB stand-in's programs (scripts/test-images builds them into
# dockhand-test/mongo-standin). A stand-in, not MongoDB: it replays the documented behaviour
# Dockhand relies on. Collections are /data/db/<database>/<collection>.jsonl, one document per
# line; the root account is /data/db/.standin/users (`name sha256-of-password`, mode 0600).
# Nothing here passes a password to another program's arguments: `printf` is a shell builtin.

DATA=/data/db
STATE=$DATA/.standin
READY=/tmp/mongod-standin.ready
MAGIC=6de29981

ts() { date -u +%Y-%m-%dT%H:%M:%S.000+0000; }

# A database tool's failure: `<time>\tFailed: <why>` on stderr, exit 1.
fail() {
  printf '%s\tFailed: %s\n' "$(ts)" "$*" >&2
  exit 1
}

# A command line the tools refuse: exit 3.
bad_option() {
  printf 'error parsing command line options: %s\n' "$*" >&2
  printf "try '%s --help' for more information\n" "${0##*/}" >&2
  exit 3
}

# Fails unless the server runs.
need_server() {
  [ -e "$READY" ] ||
    fail "can't create session: failed to connect to mongodb://$1:$2/: connection() error occurred during connection handshake: dial tcp $1:$2: connect: connection refused"
}

# The `password:` of a --config YAML file (plain, 'single' or "double" quoted) in $pw.
read_config() {
  [ -r "$1" ] || bad_option "error opening config file: open $1: no such file or directory"
  local line
  line=$(sed -n 's/^password:[[:space:]]*//p' "$1" | head -n 1)
  case "$line" in
    \'*\') line=${line#\'}; line=${line%\'}; line=$(printf '%s' "$line" | sed "s/''/'/g") ;;
    \"*\") line=${line#\"}; line=${line%\"} ;;
  esac
  pw=$line
}

# Whether the server requires authentication (it has a root account).
auth_on() { [ -s "$STATE/users" ]; }

# Whether $1 / $2 is the root account, signed in through database $3.
credentials_ok() {
  [ "${3:-admin}" = admin ] || return 1
  local sum
  sum=$(printf '%s' "$2" | sha256sum | cut -d' ' -f1)
  grep -qx "$1 $sum" "$STATE/users"
}

# The tools' authentication: nothing to do without a root account.
tool_auth() {
  auth_on || return 0
  if [ -z "$user" ] || ! credentials_ok "$user" "$pw" "${authdb:-$db}"; then
    fail "can't create session: failed to connect to mongodb://$host:$port/: connection() error occurred during connection handshake: auth error: sasl conversation error: unable to authenticate using mechanism \"SCRAM-SHA-256\": (AuthenticationFailed) Authentication failed."
  fi
}
