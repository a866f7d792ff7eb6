#!/usr/bin/env bash
# Builds the stand-in base image (see Dockerfile here) and deploy/Dockerfile on top of it, on a
# machine with podman, mmdebstrap, eatmydata and uv:
#   1. a Debian bookworm rootfs (Python 3.11) by mmdebstrap from the host's own Debian mirror, cached
#      as a directory in $WORK keyed on its inputs (so a warm run skips the slowest step);
#   2. `podman import` of that tree;
#   3. `podman build` of deploy/standin/Dockerfile on top of it (Airflow from PyPI, -c constraints.txt,
#      installed by the host's uv, bind-mounted into the build);
#   4. `podman build` of deploy/Dockerfile, the production file, with the stand-in as its base.
# The rootfs trusts the host's extra CA certificates, so a TLS-intercepting egress proxy that the
# host trusts works from inside the build as well.
#
# Usage: deploy/standin/build.sh [STANDIN_IMAGE [IMAGE]]
#   env: WORK (default build/containers), PODMAN (default podman), UV (default $WORK/tools/bin/uv)
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
standin="${1:-localhost/airflow-standin:3.3.2-python3.11}"
image="${2:-localhost/airflow-zygote:containers-test}"
work="${WORK:-${repo}/build/containers}"
podman="${PODMAN:-podman}"
uv="${UV:-${work}/tools/bin/uv}"
suite=bookworm
include=python3,python3-venv,dumb-init,ca-certificates

if [[ ! -x "${uv}" ]]; then
    echo "no uv at ${uv} (make containers installs it in ${work}/tools)" >&2
    exit 1
fi

# The host's Debian mirror for $suite, as apt on this machine is set up to reach it.
mirror="$(apt-get indextargets --format '$(SITE) $(RELEASE)' | awk -v s="${suite}" '$2 == s { print $1; exit }')"
if [[ -z "${mirror}" ]]; then
    echo "no Debian ${suite} source in apt's configuration (run apt-get update)" >&2
    exit 1
fi

extra_cas=(/usr/local/share/ca-certificates/*.crt)
[[ -e "${extra_cas[0]}" ]] || extra_cas=()
key="$(
    {
        printf '%s\n' mmdebstrap minbase eatmydata "${suite}" "${mirror}" "${include}" "$(dpkg --print-architecture)"
        ((${#extra_cas[@]} == 0)) || cat "${extra_cas[@]}"
    } | sha256sum | cut -c1-12
)"
rootfs="${work}/rootfs-${suite}-${key}"
rootfs_image="localhost/airflow-zygote-rootfs:${suite}-${key}"

# mmdebstrap rather than debootstrap: it downloads with apt in parallel, about twice as fast here,
# drops the apt cache and lists, and runs dpkg under eatmydata (no fsync per file). It writes a
# directory, kept as the cache and streamed into `podman import`: with a tarball as its output it
# built in a temporary tree and then spent 25-40 s here removing it.
make_rootfs() {
    local hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata)
    if ((${#extra_cas[@]} > 0)); then
        hooks+=(--customize-hook="cp ${extra_cas[*]} \"\$1/usr/local/share/ca-certificates/\"")
        hooks+=(--customize-hook='chroot "$1" update-ca-certificates')
    fi
    # pip trusts the system bundle (with the CAs above) rather than its own copy of certifi's.
    hooks+=(--customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" >"$1/etc/pip.conf"')
    rm -rf "${rootfs}.tmp"
    mmdebstrap --variant=minbase --include="${include}" "${hooks[@]}" "${suite}" "${rootfs}.tmp" "${mirror}"
    mv "${rootfs}.tmp" "${rootfs}"
}

mkdir -p "${work}"
# podman here: the runc runtime (crun refuses this machine's cgroup layout), no systemd, and every
# container's nofile/nproc ulimits set explicitly at the machine's own hard limits (podman's default
# raises them, which is refused; nproc is refused above kernel.pid_max too). Callers export
# CONTAINERS_CONF=$WORK/containers.conf for their podman too.
limit() { if [[ "$1" == unlimited ]]; then echo "$2"; else echo $(($1 < $2 ? $1 : $2)); fi; }
nofile="$(limit "$(ulimit -Hn)" 1048576)"
nproc="$(limit "$(ulimit -Hu)" "$(cat /proc/sys/kernel/pid_max)")"
cat >"${work}/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="${work}/containers.conf"

# The rootfs image is keyed like the directory: either one present skips mmdebstrap.
if ! "${podman}" image exists "${rootfs_image}"; then
    if [[ ! -d "${rootfs}" ]]; then
        make_rootfs
    fi
    tar -C "${rootfs}" --numeric-owner -cf - . | "${podman}" import --change 'CMD ["/bin/bash"]' - "${rootfs_image}"
fi

limits=(--ulimit "nofile=${nofile}:${nofile}" --ulimit "nproc=${nproc}:${nproc}")
"${podman}" build --format docker --network host --layers "${limits[@]}" \
    --build-arg ROOTFS_IMAGE="${rootfs_image}" --volume "${uv}:/uv:ro" \
    --ignorefile "${repo}/deploy/standin/Dockerfile.dockerignore" \
    -f "${repo}/deploy/standin/Dockerfile" -t "${standin}" "${repo}"

# The production file unchanged, its base given as the build argument. --format docker keeps
# its HEALTHCHECK (the OCI format has none).
"${podman}" build --format docker --network host --layers "${limits[@]}" \
    --build-arg AIRFLOW_BASE_IMAGE="${standin}" \
    --ignorefile "${repo}/deploy/Dockerfile.dockerignore" \
    -f "${repo}/deploy/Dockerfile" -t "${image}" "${repo}"
