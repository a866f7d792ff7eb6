#!/usr/bin/env bash
# The stand-in image's /entrypoint: the part of the official one that deploy/ relies on. It waits
# for the metadata DB (`airflow db check`, CONNECTION_CHECK_MAX_COUNT tries, 0 skips the wait, as the
# zygote sidecar does) and then execs the command, so the command is dumb-init's direct child.
set -euo pipefail

tries="${CONNECTION_CHECK_MAX_COUNT:-20}"
pause="${CONNECTION_CHECK_SLEEP_TIME:-3}"
if (($# > 0)) && [[ "$1" == "airflow" ]] && ((tries > 0)); then
    for ((i = 1; ; i++)); do
        if airflow db check >/dev/null 2>&1; then
            break
        fi
        if ((i >= tries)); then
            echo "the metadata DB is not reachable after ${tries} tries" >&2
            exit 1
        fi
        sleep "${pause}"
    done
fi

if (($# == 0)); then
    exec bash
fi
exec "$@"
