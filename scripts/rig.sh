#!/usr/bin/env bash
# The platform rig: a Debian arm64 system under software emulation (qemu-system-aarch64, TCG),
# standing in for a Raspberry Pi. Debian's own kernel, systemd as PID 1, udev, and snd-aloop as
# a real clocked ALSA card; the host's loopback services are reachable at 10.0.2.2.
#
#   scripts/rig.sh up [--release trixie|bookworm] [--no-install]
#   scripts/rig.sh run CMD          CMD runs as root inside (a shell command line); its output
#                                   and exit status are rig.sh's own
#   scripts/rig.sh copy-in SRC DST  a host file or directory into the system
#   scripts/rig.sh down
#   scripts/rig.sh build [--release R]   only build (or find) the cached image
#   scripts/rig.sh install                this checkout installed again into the running system
#   scripts/rig.sh status                 whether a system is up, and which
#
# The base image is cached under $PIAGENT_RIG_CACHE (default ~/.cache/piagent-rig), keyed by a
# hash of its recipe (this file's image section and the release), and never written to: each
# `up` boots a fresh copy-on-write overlay of it, so every system starts as a fresh install.
# `up` copies this checkout in (tracked and untracked files, as a clone would have them), runs
# its scripts/install.sh as a user would (`install.sh --start`) and returns once
# piagent.service is active or failed. One system at a time; `up` on a system already up
# returns at once.
set -euo pipefail

RIG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PIAGENT_RIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/piagent-rig}"
RUN_DIR="$CACHE/run"
SIM_FROM_GUEST=ws://10.0.2.2:8765  # `piagent sim` on the host, through qemu's user network
MEMORY="${PIAGENT_RIG_MEMORY:-1024}"  # MB; a Pi Zero 2 W has 512, a Pi 3/4 1024 or more
SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
          -o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=15
          -o ServerAliveCountMax=8)

die() { printf 'rig.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'rig: %s\n' "$*" >&2; }

# --- The image recipe ---------------------------------------------------------------------
# Everything between the two markers is hashed into the cache key: change the recipe and the
# next `up` builds a new image.
# RECIPE-BEGIN
# What a Raspberry Pi OS Lite system has that matters here: systemd, udev, ALSA's utilities,
# Python 3 (no numpy, no PyAudio: the installer brings those), sudo, git, an SSH server.
# initramfs-tools: Debian's arm64 kernel has virtio and ext4 as modules.
BASE_PACKAGES=systemd,systemd-sysv,udev,kmod,dbus,linux-image-arm64,initramfs-tools,python3,\
alsa-utils,openssh-server,sudo,iproute2,iputils-ping,ca-certificates,git,procps,less,\
apt-utils,netbase

# An initramfs of just what boots a virtio disk (about 11 MB instead of 60), gzip because
# that is fast under emulation.
# shellcheck disable=SC2016  # a script of its own, expanded where it runs
initramfs_hook='#!/bin/sh
case "$1" in prereqs) echo ""; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_mmio virtio_pci virtio_blk ext4 crc32c_generic'

# Run on the host with the root file system as $1, after the packages are installed.
customize() {
    local root="$1"
    echo rig >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 rig\n' >"$root/etc/hosts"
    echo '/dev/vda / ext4 defaults,noatime 0 1' >"$root/etc/fstab"
    # qemu's user network: the guest is 10.0.2.15, the host 10.0.2.2, its DNS proxy 10.0.2.3.
    mkdir -p "$root/etc/systemd/network"
    printf '[Match]\nName=eth0\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n' \
        >"$root/etc/systemd/network/10-eth0.network"
    rm -f "$root/etc/resolv.conf"
    echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
    chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
    # The serial console carries the kernel's and systemd's messages to console.log; a getty
    # on it would hang the line up.
    chroot "$root" systemctl mask serial-getty@ttyAMA0.service >/dev/null 2>&1
    # Nothing should run apt behind a test's back.
    chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
    install -d -m 0700 "$root/root/.ssh"
    install -m 0600 "$2" "$root/root/.ssh/authorized_keys"
    # A fresh machine-id at every boot of a fresh overlay, as on a freshly flashed card.
    : >"$root/etc/machine-id"
}
# RECIPE-END

recipe_key() {
    # Comments and blank lines do not change the image.
    local release="$1"
    { sed -n '/^# RECIPE-BEGIN/,/^# RECIPE-END/p' "${BASH_SOURCE[0]}" \
        | grep -v -E '^[[:space:]]*(#|$)'; echo "$release"; } | sha256sum | cut -c1-16
}

host_tools() {
    local missing=()
    for t in qemu-system-aarch64:qemu-system-arm qemu-aarch64-static:qemu-user-static \
        mmdebstrap:mmdebstrap mkfs.ext4:e2fsprogs qemu-img:qemu-utils ssh:openssh-client \
        update-binfmts:binfmt-support; do
        command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
    done
    # qemu-system-aarch64 needs the EFI ROM of its virtio NIC.
    [ -e /usr/lib/ipxe/qemu/efi-virtio.rom ] || missing+=(ipxe-qemu)
    if [ "${#missing[@]}" -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing host packages: ${missing[*]} (run as root to install)"
        log "installing host packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # arm64 programs in the chroot run through qemu-user, registered with binfmt_misc.
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
            || die "binfmt_misc is not mounted and cannot be"
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 \
        || die "cannot register qemu-aarch64 with binfmt_misc"
}

# build RELEASE: make (or find) $CACHE/images/RELEASE-KEY/{base.img,vmlinuz,initrd.img,key}
build_image() {
    local release="$1" key dir tmp start
    key="$(recipe_key "$release")"
    dir="$CACHE/images/$release-$key"
    if [ -f "$dir/complete" ]; then
        echo "$dir"
        return
    fi
    host_tools
    start=$(date +%s)
    log "building the $release arm64 image (recipe $key); about 10 minutes"
    # A build that was interrupted may have left /proc or /sys mounted in its tree: never
    # delete across a mount point, and say so instead.
    if [ -d "$dir/root" ] && findmnt -rn -o TARGET | grep -q "^$dir/root"; then
        die "$dir/root has file systems mounted in it (an interrupted build?): unmount them"
    fi
    rm -rf --one-file-system "$dir"
    mkdir -p "$dir"
    tmp="$dir/root"
    ssh-keygen -q -t ed25519 -N '' -C piagent-rig -f "$dir/key"
    # mmdebstrap runs hooks with sh: hand them the recipe as scripts of their own.
    printf '%s\n' "$initramfs_hook" >"$dir/initramfs-hook"
    { echo 'set -eu'; declare -f customize; echo 'customize "$@"'; } >"$dir/customize.sh"
    # shellcheck disable=SC2016  # the hook's $1 is mmdebstrap's, expanded where it runs
    mmdebstrap --arch=arm64 --variant=minbase --include="$BASE_PACKAGES" \
        --essential-hook='mkdir -p "$1/etc/initramfs-tools/hooks" "$1/etc/initramfs-tools/conf.d"
            install -m 0755 "'"$dir/initramfs-hook"'" "$1/etc/initramfs-tools/hooks/rig"
            printf "MODULES=list\nCOMPRESS=gzip\n" >"$1/etc/initramfs-tools/conf.d/rig.conf"' \
        --customize-hook="bash '$dir/customize.sh' \"\$1\" '$dir/key.pub'" \
        "$release" "$tmp" >"$dir/build.log" 2>&1 \
        || { tail -30 "$dir/build.log" >&2; die "mmdebstrap failed (log: $dir/build.log)"; }
    cp "$tmp"/boot/vmlinuz-* "$dir/vmlinuz"
    cp "$tmp"/boot/initrd.img-* "$dir/initrd.img"
    # A sparse 4 GB ext4 disk with the tree in it; the Python stack the installer adds takes
    # about 400 MB.
    mkfs.ext4 -q -L rigroot -d "$tmp" "$dir/base.img" 4G
    rm -rf --one-file-system "$tmp"
    printf 'release=%s\nrecipe=%s\nbuilt=%s\nseconds=%s\n' "$release" "$key" "$(date -Is)" \
        "$(($(date +%s) - start))" >"$dir/complete"
    log "built $dir in $(($(date +%s) - start)) s"
    echo "$dir"
}

# --- A running system ---------------------------------------------------------------------
is_up() {
    [ -f "$RUN_DIR/qemu.pid" ] && kill -0 "$(cat "$RUN_DIR/qemu.pid")" 2>/dev/null
}

ssh_rig() {
    local port image
    port="$(cat "$RUN_DIR/port")"
    image="$(cat "$RUN_DIR/image")"
    ssh "${SSH_OPTS[@]}" -i "$image/key" -p "$port" root@127.0.0.1 "$@"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

boot() {
    local image="$1" port
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    echo "$image" >"$RUN_DIR/image"
    port="$(free_port)"
    echo "$port" >"$RUN_DIR/port"
    qemu-img create -q -f qcow2 -F raw -b "$image/base.img" "$RUN_DIR/disk.qcow2"
    # qemu outlives this script: it must not inherit the lock's descriptor (9>&- below).
    # cortex-a53: the core of a Pi 3, Zero 2 W and CM3 (a Pi 4 has the A72), so numpy and
    # scipy run with the same instruction set as there.
    qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 2 -m "$MEMORY" \
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
        -append "root=/dev/vda rw console=ttyAMA0 net.ifnames=0 systemd.show_status=0" \
        -drive "if=none,id=hd,file=$RUN_DIR/disk.qcow2,format=qcow2,cache=unsafe" \
        -device virtio-blk-pci,drive=hd \
        -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" \
        -device virtio-net-pci,netdev=net0 \
        -device virtio-rng-pci \
        -display none -monitor none -serial "file:$RUN_DIR/console.log" \
        -daemonize -pidfile "$RUN_DIR/qemu.pid" 9>&- \
        || die "qemu did not start"
    local deadline=$((SECONDS + 300))
    until ssh_rig true 2>/dev/null; do
        if ! is_up; then
            tail -20 "$RUN_DIR/console.log" >&2
            die "the system stopped while booting (console: $RUN_DIR/console.log)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "no SSH after 300 s (console: $RUN_DIR/console.log)"
        sleep 2
    done
    # Wait for the boot to settle, so that tests start from a quiet system.
    ssh_rig 'systemctl is-system-running --wait >/dev/null 2>&1 || true'
}

trust_host_cas() {
    # The certificate authorities the host added to its trust store (a TLS-intercepting proxy's,
    # say) are the guest's too: its traffic leaves through the host's network, and pip must
    # reach PyPI over HTTPS where Debian lacks a package (websockets on bookworm).
    local certs=(/usr/local/share/ca-certificates/*.crt)
    [ -e "${certs[0]}" ] || return 0
    log "trusting the host's added certificate authorities (${#certs[@]})"
    tar -C /usr/local/share/ca-certificates -cf - "${certs[@]##*/}" \
        | ssh_rig 'mkdir -p /usr/local/share/ca-certificates/host \
            && tar -C /usr/local/share/ca-certificates/host -xf - \
            && update-ca-certificates >/dev/null 2>&1'
}

install_checkout() {
    # The checkout as a clone has it: tracked files plus untracked ones that are not ignored,
    # so that uncommitted work is what gets installed.
    log "copying the checkout to /root/piagent"
    (cd "$RIG_DIR" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) \
        | ssh_rig 'rm -rf /root/piagent && mkdir -p /root/piagent && tar -C /root/piagent -xf -'
    # The rig's sound card is plugged in (tests unplug it when that is the point), and the
    # agent is `piagent sim` on the host's default port: the user's answers to setup.
    ssh_rig 'modprobe snd-aloop'
    log "running scripts/install.sh --start --agent-id demo --server $SIM_FROM_GUEST inside"
    ssh_rig "cd /root/piagent && scripts/install.sh --start --agent-id demo \
        --server $SIM_FROM_GUEST </dev/null" >&2
}

cmd_up() {
    local release=trixie install=1
    while [ "$#" -gt 0 ]; do
        case "$1" in
            --release) release="${2:?--release needs a value}"; shift 2 ;;
            --no-install) install=0; shift ;;
            *) die "up: unknown option $1" ;;
        esac
    done
    case "$release" in trixie | bookworm) ;; *) die "unknown release $release (trixie|bookworm)" ;; esac
    if is_up; then
        log "already up ($(cat "$RUN_DIR/release"))"
        return 0
    fi
    local image start=$SECONDS
    image="$(build_image "$release")"
    host_tools
    log "booting $release"
    boot "$image"
    echo "$release" >"$RUN_DIR/release"
    log "booted in $((SECONDS - start)) s"
    trust_host_cas
    if [ "$install" = 1 ]; then
        install_checkout
        log "installed in $((SECONDS - start)) s"
    fi
    echo "rig: up ($release, ssh port $(cat "$RUN_DIR/port"))"
}

cmd_down() {
    if is_up; then
        ssh_rig 'systemctl poweroff' >/dev/null 2>&1 || true
        local pid deadline=$((SECONDS + 30))
        pid="$(cat "$RUN_DIR/qemu.pid")"
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 1; done
        kill "$pid" 2>/dev/null || true
    fi
    rm -rf "$RUN_DIR"
    echo "rig: down"
}

cmd_run() {
    [ "$#" -gt 0 ] || die "run needs a command"
    is_up || die "the rig is not up (scripts/rig.sh up)"
    ssh_rig "$*"
}

cmd_copy_in() {
    [ "$#" -eq 2 ] || die "copy-in needs SRC and DST"
    is_up || die "the rig is not up (scripts/rig.sh up)"
    local src="$1" dst="$2"
    if [ -d "$src" ]; then
        tar -C "$src" -cf - . | ssh_rig "mkdir -p '$dst' && tar -C '$dst' -xf -"
    else
        [ -e "$src" ] || die "no such file: $src"
        ssh_rig "cat > '$dst'" <"$src"
    fi
}

cmd_status() {
    if is_up; then
        echo "up: $(cat "$RUN_DIR/release"), ssh port $(cat "$RUN_DIR/port"), image $(cat "$RUN_DIR/image")"
    else
        echo "down"
        return 3
    fi
}

# One rig command that builds or boots at a time (a second waits): two builds in one tree, or
# two systems on one run directory, would wreck each other.
lock_rig() {
    mkdir -p "$CACHE"
    exec 9>"$CACHE/lock"
    flock 9
}

case "${1:-}" in
    up) shift; lock_rig; cmd_up "$@" ;;
    down) shift; lock_rig; cmd_down ;;
    run) shift; cmd_run "$@" ;;
    copy-in) shift; cmd_copy_in "$@" ;;
    build)
        shift
        lock_rig
        rel=trixie
        [ "${1:-}" = --release ] && rel="${2:?}"
        build_image "$rel"
        ;;
    install)
        # This checkout again, into the running system (after a change, without a new boot).
        lock_rig
        is_up || die "the rig is not up (scripts/rig.sh up)"
        install_checkout
        ;;
    status) cmd_status ;;
    *) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
