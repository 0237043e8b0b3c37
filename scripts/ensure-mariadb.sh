#!/usr/bin/env bash
# Makes sure a MariaDB answers on 127.0.0.1:3306 and lets root in over TCP
# without a password, as the store's MySQL tests expect
# (IM_TEST_MYSQL_URL defaults to mysql://root@127.0.0.1:3306). Installs
# Debian's mariadb-server if it is missing, starts it if nothing answers, and
# opens root's TCP login if only the unix socket lets root in (a fresh Debian
# install). Leaves an already running server running. Safe to run again.
set -euo pipefail

# mysqladmin ping succeeds whenever the server answers, even if it refuses us.
ping() { mysqladmin --connect-timeout=2 -h127.0.0.1 -uroot ping >/dev/null 2>&1; }
tcp_login() { mariadb --connect-timeout=2 -h127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1; }

if ! command -v mysqladmin >/dev/null 2>&1 || ! ping; then
    if [ ! -x /usr/sbin/mariadbd ] || ! command -v mysqladmin >/dev/null 2>&1; then
        echo "ensure-mariadb: installing mariadb-server" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
    fi
    # The package's own start may have worked; otherwise start it here.
    if ! ping; then
        install -d -o mysql -g mysql /run/mysqld
        if [ ! -d /var/lib/mysql/mysql ]; then
            mariadb-install-db --user=mysql >/dev/null
        fi
        echo "ensure-mariadb: starting mariadbd" >&2
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
        for _ in $(seq 1 60); do
            ping && break
            sleep 0.5
        done
        if ! ping; then
            echo "ensure-mariadb: MariaDB did not answer on 127.0.0.1:3306 within 30 s" >&2
            exit 1
        fi
    fi
fi

if ! tcp_login; then
    # Through the socket, where root gets in by being root. 127.0.0.1 is
    # root@localhost, unless the server skips name resolution.
    echo "ensure-mariadb: letting root log in over TCP without a password" >&2
    mariadb -uroot -e "
        ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
        CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
        GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
        FLUSH PRIVILEGES;"
    if ! tcp_login; then
        echo "ensure-mariadb: root still cannot log in over 127.0.0.1:3306" >&2
        exit 1
    fi
fi
