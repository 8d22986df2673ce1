#!/usr/bin/env bash
# Makes the services Herald needs answer on 127.0.0.1, on a bare Debian
# machine or one that already has them:
#   RabbitMQ   127.0.0.1:5672  (guest/guest)
#   Redis      127.0.0.1:6379
#   PostgreSQL 127.0.0.1:5432  (user postgres, no password over TCP from 127.0.0.1)
# A service that already answers is left alone. One that is missing is
# installed from Debian's packages and started; one that is installed but
# stopped is started. Also installs the build prerequisites (cc, pkg-config,
# curl) and checks that cargo exists. Safe to run again and again.
#   Postfix    installed, not started: the tests start private instances of
#              it (own configuration directory, loopback port), a real MTA
#              that bounces what it cannot deliver (issue 17).
#
# Usage: services.sh [postgresql|redis|rabbitmq|postfix]...   (default: all four)
# Environment: HERALD_SERVICES_WAIT_SECS (default 90) bounds each wait.
set -euo pipefail

WANT=("$@")
[ "${#WANT[@]}" -gt 0 ] || WANT=(postgresql redis rabbitmq postfix)
for w in "${WANT[@]}"; do
    case "$w" in
        postgresql | redis | rabbitmq | postfix) ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) printf 'services.sh: unknown service %s (postgresql, redis, rabbitmq, postfix)\n' "$w" >&2; exit 2 ;;
    esac
done

WAIT_SECS="${HERALD_SERVICES_WAIT_SECS:-90}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '%s\n' "$*"; }
die() { printf 'services.sh: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: run this script as root"
    SUDO=(sudo)
fi
as_root() { "${SUDO[@]}" "$@"; }

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand (this script knows Debian and Ubuntu)"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt: updating the package lists"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        APT_UPDATED=1
    fi
    log "apt: installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# Is something listening on 127.0.0.1:$1?
tcp_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

systemd_is_init() {
    [ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm= 2>/dev/null || true)" = "systemd" ]
}

# wait_for SECONDS CHECK...: runs CHECK until it succeeds or time runs out.
wait_for() {
    local secs=$1
    shift
    local deadline=$((SECONDS + secs))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 1
    done
}

# ---- build prerequisites and cargo ----

need=()
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
if [ "${#need[@]}" -gt 0 ]; then
    apt_install "${need[@]}"
    log "build tools: installed ${need[*]}"
else
    log "build tools: already installed"
fi

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    cat >&2 <<'EOF'
services.sh: error: cargo was not found.
Install Rust with rustup (https://rustup.rs):
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . "$HOME/.cargo/env"
The toolchain this repository wants (rust-toolchain.toml) is installed on first use.
Then run this command again.
EOF
    exit 1
fi
log "cargo: $(cargo --version 2>/dev/null || echo found)"

# ---- PostgreSQL ----

pg_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p 5432 -t 2
    else
        tcp_open 5432
    fi
}

# The newest installed major version, e.g. 15.
pg_version() {
    local d v=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -d "$d" ] || continue
        d=${d%/bin}
        d=${d##*/}
        if [ -z "$v" ] || [ "$d" -gt "$v" ] 2>/dev/null; then v=$d; fi
    done
    [ -n "$v" ] && printf '%s\n' "$v"
}

pg_start() {
    local ver=$1
    if systemd_is_init; then
        as_root systemctl start "postgresql@${ver}-main" || as_root systemctl start postgresql
    else
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    fi
}

pg_reload() {
    local ver=$1
    if systemd_is_init; then
        as_root systemctl reload "postgresql@${ver}-main" || as_root systemctl reload postgresql
    else
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
    fi
}

# Lets user postgres in over TCP from loopback without a password: only on a
# cluster this script just installed or created.
pg_trust_loopback() {
    local ver=$1 hba="/etc/postgresql/$1/main/pg_hba.conf"
    [ -f "$hba" ] || die "postgresql: $hba not found"
    if as_root grep -qE '^host[[:space:]]+all[[:space:]]+postgres[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        return 0
    fi
    local tmp
    tmp=$(mktemp)
    {
        echo "# Added by Herald's deploy/local/services.sh: user postgres over TCP from this machine, no password."
        echo "host    all    postgres    127.0.0.1/32    trust"
        echo "host    all    postgres    ::1/128         trust"
        as_root cat "$hba"
    } >"$tmp"
    as_root cp "$tmp" "$hba"
    rm -f "$tmp"
    pg_reload "$ver"
}

ensure_postgres() {
    if pg_answers; then
        log "postgresql: already running"
        return 0
    fi
    local how="started" fresh=0 ver
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(pg_version || true)" ]; then
        apt_install postgresql
        how="installed and started"
        fresh=1
    fi
    ver=$(pg_version) || die "postgresql: no server version under /usr/lib/postgresql after installing"
    if [ ! -d "/etc/postgresql/$ver/main" ]; then
        as_root pg_createcluster "$ver" main >/dev/null
        fresh=1
    fi
    if ! pg_answers; then
        pg_start "$ver" || die "postgresql: failed to start cluster $ver/main (see /var/log/postgresql/)"
    fi
    if ! wait_for "$WAIT_SECS" pg_answers; then
        die "postgresql did not answer on 127.0.0.1:5432 within ${WAIT_SECS}s (see /var/log/postgresql/postgresql-$ver-main.log)"
    fi
    if [ "$fresh" -eq 1 ]; then
        pg_trust_loopback "$ver"
    fi
    log "postgresql: $how"
}

# Warns (never changes anything) when a running server wants a password.
pg_check_login() {
    command -v psql >/dev/null 2>&1 || return 0
    if ! PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -p 5432 -U postgres -w -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
        log "postgresql: warning: user postgres cannot log in over TCP without a password;"
        log "  set HERALD_DATABASE_URL=postgres://USER:PASSWORD@127.0.0.1:5432/herald, or add"
        log "  'host all postgres 127.0.0.1/32 trust' at the top of pg_hba.conf and reload"
    fi
}

# ---- Redis ----

redis_answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]
    else
        tcp_open 6379
    fi
}

ensure_redis() {
    if redis_answers; then
        log "redis: already running"
        return 0
    fi
    local how="started"
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
        how="installed and started"
        # The package may have started it already.
        wait_for 5 redis_answers || true
    fi
    if ! redis_answers; then
        if systemd_is_init; then
            as_root systemctl start redis-server || die "redis: systemctl start redis-server failed"
        else
            redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
                --dir /tmp --logfile /tmp/herald-redis.log || die "redis: redis-server failed to start"
        fi
    fi
    if ! wait_for "$WAIT_SECS" redis_answers; then
        die "redis did not answer on 127.0.0.1:6379 within ${WAIT_SECS}s (see /tmp/herald-redis.log or /var/log/redis/)"
    fi
    log "redis: $how"
}

# ---- RabbitMQ ----

# Does the broker answer the AMQP protocol header with a frame (connection.start)?
# A TCP probe alone would call a hung broker healthy.
rabbit_answers() {
    local first
    first=$(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"${RABBIT_PORT:-5672}"' &&
        printf "AMQP\000\000\011\001" >&3 && head -c 1 <&3 | od -An -tx1' 2>/dev/null | tr -d ' \n' || true)
    [ "$first" = "01" ]
}

ensure_rabbitmq() {
    if rabbit_answers; then
        log "rabbitmq: already running"
        return 0
    fi
    if tcp_open 5672; then
        # Something listens but does not speak AMQP (yet): give it a moment,
        # never start a second broker beside it.
        if wait_for 15 rabbit_answers; then
            log "rabbitmq: already running"
            return 0
        fi
        die "rabbitmq: 127.0.0.1:5672 accepts connections but does not answer the AMQP handshake (a hung broker?). Restart it (systemctl restart rabbitmq-server, or rabbitmqctl stop then rabbitmq-server -detached) and see /var/log/rabbitmq/"
    fi
    local how="started"
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        apt_install rabbitmq-server
        how="installed and started"
        wait_for 5 rabbit_answers || true
    fi
    if ! rabbit_answers; then
        if systemd_is_init; then
            as_root systemctl start rabbitmq-server || die "rabbitmq: systemctl start rabbitmq-server failed"
        else
            as_root rabbitmq-server -detached || die "rabbitmq: rabbitmq-server -detached failed"
        fi
    fi
    if ! wait_for "$WAIT_SECS" rabbit_answers; then
        die "rabbitmq did not answer on 127.0.0.1:5672 within ${WAIT_SECS}s (see /var/log/rabbitmq/)"
    fi
    log "rabbitmq: $how"
}

# Postfix: the binaries only. Debian's package would otherwise ask how to
# configure the system's own mail (it is told: not at all) and start it.
ensure_postfix() {
    if [ -x /usr/sbin/postfix ]; then
        log "postfix: already installed (tests start their own instances)"
        return 0
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
    apt_install postfix
    log "postfix: installed, not started (tests start their own instances)"
}

for w in "${WANT[@]}"; do
    case "$w" in
        postfix) ensure_postfix ;;
        postgresql) ensure_postgres; pg_check_login ;;
        redis) ensure_redis ;;
        rabbitmq) ensure_rabbitmq ;;
    esac
done
