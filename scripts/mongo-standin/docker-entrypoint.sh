#!/bin/sh
# The MongoDB stand-in's entry point, replaying the official mongo image's contract: on the
# first start (an empty /data/db), MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD
# (both or neither) make the root account in `admin` and MONGO_INITDB_DATABASE the database;
# a temporary server answers on the loopback meanwhile and stops; then `mongod` runs as PID 1.
set -eu
. /usr/bin/mongo-standin-lib.sh
if [ "${1#-}" != "$1" ]; then set -- mongod "$@"; fi
if [ "$1" = mongod ]; then
  rm -f "$READY"
  if [ ! -e "$STATE/initialised" ]; then
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    u=${MONGO_INITDB_ROOT_USERNAME:-} p=${MONGO_INITDB_ROOT_PASSWORD:-}
    if { [ -n "$u" ] && [ -z "$p" ]; } || { [ -z "$u" ] && [ -n "$p" ]; }; then
      echo 'error: missing MONGO_INITDB_ROOT_USERNAME or MONGO_INITDB_ROOT_PASSWORD: both need to be specified for a user to be created' >&2
      exit 1
    fi
    # The temporary initialisation server.
    touch "$READY"
    if [ -n "$u" ]; then
      (umask 077 && printf '%s %s\n' "$u" "$(printf '%s' "$p" | sha256sum | cut -d' ' -f1)" >"$STATE/users")
    fi
    [ -z "${MONGO_INITDB_DATABASE:-}" ] || mkdir -p "$DATA/$MONGO_INITDB_DATABASE"
    sleep 1
    rm -f "$READY"
    touch "$STATE/initialised"
    echo 'MongoDB init process complete; ready for start up.'
  fi
fi
exec "$@"
