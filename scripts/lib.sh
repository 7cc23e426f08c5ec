# Shared by the set-up scripts: make PostgreSQL and Redis reachable, installing them from
# Debian's packages when they are missing. Sourced, not run.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root for: $*" >&2; return 1; fi
}

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # host port name [pid log]: with a pid, gives up as soon as that process is gone
    for _ in $(seq 1 60); do
        tcp_open "$1" "$2" && return 0
        if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then
            echo "$3 exited before listening on $1:$2${5:+; the end of $5:}" >&2
            [ -z "${5:-}" ] || tail -n 20 "$5" >&2
            return 1
        fi
        sleep 0.5
    done
    echo "$3 did not come up on $1:$2" >&2; return 1
}

ensure_build_deps() {
    command -v pg_config >/dev/null || apt_install libpq-dev
    command -v cc >/dev/null || apt_install build-essential
    command -v pkg-config >/dev/null || apt_install pkg-config
    # pg_query (PostgreSQL's own parser, for adequacy mutants) binds its C library with
    # bindgen (libclang) and builds its protobuf definitions (protoc).
    command -v protoc >/dev/null || apt_install protobuf-compiler
    # (libclang-cpp alone, which other packages bring, is not what bindgen loads.)
    ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || apt_install libclang-dev
}

ensure_postgres() {
    if tcp_open 127.0.0.1 5432; then return 0; fi
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        echo "installing PostgreSQL from Debian's packages..."
        apt_install postgresql
        fresh_install=1
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "starting PostgreSQL $version..."
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for 127.0.0.1 5432 PostgreSQL
    if [ -n "${fresh_install:-}" ]; then
        # A fresh cluster only lets 'postgres' in over the local socket: give it the password
        # the default configuration uses over TCP.
        as_root runuser -u postgres -- psql -qc "ALTER ROLE postgres PASSWORD 'postgres'"
    fi
}

ensure_redis() {
    if tcp_open 127.0.0.1 6379; then return 0; fi
    command -v redis-server >/dev/null || { echo "installing Redis from Debian's packages..."; apt_install redis-server; }
    echo "starting Redis..."
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --logfile "${TMPDIR:-/tmp}/sqljudge-redis.log"
    wait_for 127.0.0.1 6379 Redis
}

ensure_services() {
    ensure_build_deps
    ensure_postgres
    ensure_redis
}
