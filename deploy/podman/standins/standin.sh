#!/bin/sh
# Entry point of the stand-in image: starts the server named by the first argument the way the upstream
# image would, configured from the same environment variables, then replaces itself with it.
#   rabbitmq-server   RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS; data in /var/lib/rabbitmq
#   postgres          POSTGRES_PASSWORD / POSTGRES_DB (superuser postgres); data in /var/lib/postgresql/data
#   redis-server ...  the arguments as given; data in /data, reachable from other containers
set -eu
server=${1:?usage: standin rabbitmq-server|postgres|redis-server [args...]}
shift

as() {  # as <user> <command...>: run as that system user (util-linux's setpriv, no su/gosu needed)
  user=$1; shift
  exec setpriv --reuid="$user" --regid="$user" --init-groups "$@"
}

case "$server" in
  rabbitmq-server)
    # The upstream image's variables, as configuration: the guest user may only connect from localhost.
    cat > /etc/rabbitmq/rabbitmq.conf <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
loopback_users = none
CONF
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
    # Logs to standard output, as the upstream image does.
    HOME=/var/lib/rabbitmq RABBITMQ_LOGS=- as rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server
    ;;
  postgres)
    PGDATA=/var/lib/postgresql/data
    bin=/usr/lib/postgresql/15/bin
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      password_file=$(mktemp)
      printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > "$password_file"
      chown postgres "$password_file"
      setpriv --reuid=postgres --regid=postgres --init-groups \
        "$bin/initdb" -D "$PGDATA" -U postgres --pwfile="$password_file" \
          --auth-local=trust --auth-host=scram-sha-256 >/dev/null
      rm -f "$password_file"
      echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
      if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        echo "CREATE DATABASE \"$POSTGRES_DB\"" | setpriv --reuid=postgres --regid=postgres --init-groups \
          "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
      fi
    fi
    as postgres "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' \
      -c unix_socket_directories=/var/run/postgresql
    ;;
  redis-server)
    mkdir -p /data && chown redis:redis /data
    cd /data
    # Without a password Redis only answers loopback clients unless protected mode is off; the other
    # containers on the compose network are its only clients.
    as redis /usr/bin/redis-server --protected-mode no --dir /data "$@"
    ;;
  *)
    echo "standin: unknown server $server" >&2
    exit 64
    ;;
esac
