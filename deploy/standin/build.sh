#!/usr/bin/env bash
# Builds the stand-in base image (see Dockerfile here) on a machine with podman and mmdebstrap:
#   1. a Debian bookworm rootfs (Python 3.11) by mmdebstrap from the host's own Debian mirror, cached
#      as a tarball in $WORK keyed on its inputs (so a warm run skips the slowest step);
#   2. `podman import` of that tarball;
#   3. `podman build` of deploy/standin/Dockerfile on top of it (Airflow from PyPI, -c constraints.txt).
# The rootfs trusts the host's extra CA certificates, so a TLS-intercepting egress proxy that the
# host trusts works from inside the build as well.
#
# Usage: deploy/standin/build.sh [IMAGE]   (env: WORK, default build/containers; PODMAN, default podman)
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
image="${1:-localhost/airflow-standin:3.3.2-python3.11}"
work="${WORK:-${repo}/build/containers}"
podman="${PODMAN:-podman}"
suite=bookworm
include=python3,python3-venv,dumb-init,ca-certificates

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
        printf '%s\n' mmdebstrap "${suite}" "${mirror}" "${include}" "$(dpkg --print-architecture)"
        ((${#extra_cas[@]} == 0)) || cat "${extra_cas[@]}"
    } | sha256sum | cut -c1-12
)"
tarball="${work}/rootfs-${suite}-${key}.tar"
rootfs_image="localhost/airflow-zygote-rootfs:${suite}-${key}"

# mmdebstrap rather than debootstrap: it downloads with apt in parallel, about twice as fast here,
# writes the tarball itself and drops the apt cache and lists.
make_rootfs() {
    local hooks=()
    if ((${#extra_cas[@]} > 0)); then
        hooks+=(--customize-hook="cp ${extra_cas[*]} \"\$1/usr/local/share/ca-certificates/\"")
        hooks+=(--customize-hook='chroot "$1" update-ca-certificates')
    fi
    # pip trusts the system bundle (with the CAs above) rather than its own copy of certifi's.
    hooks+=(--customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" >"$1/etc/pip.conf"')
    mmdebstrap --variant=minbase --include="${include}" "${hooks[@]}" "${suite}" "${tarball}.tmp.tar" "${mirror}"
    mv "${tarball}.tmp.tar" "${tarball}"
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

# The rootfs image is keyed like the tarball: either one present skips mmdebstrap.
if ! "${podman}" image exists "${rootfs_image}"; then
    if [[ ! -f "${tarball}" ]]; then
        make_rootfs
    fi
    "${podman}" import --change 'CMD ["/bin/bash"]' "${tarball}" "${rootfs_image}"
fi

"${podman}" build --format docker --network host --layers \
    --ulimit "nofile=${nofile}:${nofile}" --ulimit "nproc=${nproc}:${nproc}" \
    --build-arg ROOTFS_IMAGE="${rootfs_image}" \
    --ignorefile "${repo}/deploy/standin/Dockerfile.dockerignore" \
    -f "${repo}/deploy/standin/Dockerfile" -t "${image}" "${repo}"
