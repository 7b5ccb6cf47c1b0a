#!/usr/bin/env bash
# Install piagent as a systemd service on Raspberry Pi OS or Debian (bookworm or later).
# Every dependency Debian carries comes from Debian's packages, so nothing is compiled on the
# device; pip adds only what Debian has too old (websockets on bookworm), as a wheel.
# Idempotent: a second run changes nothing and says "already installed" for each step.
# See --help.
set -euo pipefail
# Whatever the caller's umask, the venv and the unit must be readable by the piagent user;
# the config and the key get their modes explicitly.
umask 022

usage() {
    cat <<'EOF'
Usage: sudo scripts/install.sh [OPTIONS]

Installs piagent as the systemd service piagent.service. Nothing is compiled on the device.
  preflight      before anything changes: a Debian-based system (dpkg, apt-get), a
                 supported architecture (arm64, armhf, amd64) and Python >= 3.11 (--python);
                 one line per problem and exit 1 when one is missing. Without systemd as
                 PID 1 (a chroot, a container) it warns: the service cannot start there.
  apt packages   python3-venv python3-setuptools python3-wheel alsa-utils python3-numpy
                 python3-scipy python3-pyaudio python3-systemd python3-yaml, libspeexdsp1
                 (audio.aec's speex engine, loaded with ctypes), python3-lgpio
                 where apt has it (Raspberry Pi OS), and python3-gpiozero and
                 python3-websockets when apt's version is recent enough (as pyproject.toml
                 says); only the missing ones. espeak-ng is not installed: only the spoken
                 prompt of 'piagent demo' uses it (apt-get install espeak-ng)
  /opt/piagent   src/ (a copy of the source) and venv/ (--system-site-packages, so Debian's
                 modules are used): pip builds piagent with Debian's setuptools
                 (--no-build-isolation) and fetches only what apt had too old, as wheels
                 (--only-binary=:all:), and pymicro-wakeword (the wake word, models
                 inside) on arm64 and amd64; armhf has no wheel of it, so a wake section
                 is unavailable there and the button works alone (pyproject.toml's
                 marker). Then 'python -m piagent.selfcheck' imports everything
                 the daemon imports; the install fails when an import fails
  user piagent   system user, home /var/lib/piagent, no login shell, groups audio and gpio
                 (the gpio group is created where it does not exist, e.g. off a Pi)
  /etc/piagent   config.yaml from config.yaml.example, only if absent (0640 root:piagent);
                 api_key (0600 root:root, read by systemd's LoadCredential=) when
                 $ELEVENLABS_API_KEY is set or --api-key-file is given; never printed
  setup          'piagent setup' after a fresh config (or with --agent-id/--server): picks
                 the sound devices (asks on a terminal; --yes, the first hardware devices,
                 otherwise) and writes them into the config
  /etc/modules-load.d/piagent.conf
                 loads ALSA's core (snd) at boot, so that the unit's DeviceAllow=char-alsa
                 finds "alsa" in /proc/devices when the service starts
  the unit       /etc/systemd/system/piagent.service, daemon-reload, enable (not start)
  /usr/local/bin/piagent -> /opt/piagent/venv/bin/piagent

Options:
  --source DIR        the piagent source to install (default: this script's repository)
  --api-key-file F    install the API key read from file F (ELEVENLABS_API_KEY also works)
  --agent-id ID       the agent's ID, written into the config by 'piagent setup'
  --server URL        the agent server (agent.server), written by 'piagent setup'
  --setup             run 'piagent setup' even when the config is already there
  --no-setup          never run 'piagent setup' (default: after a fresh config, or with
                      --agent-id/--server)
  --start             check the config (piagent check-config) and start the service
                      (restart it if this run changed something); not while
                      agent.agent_id is unset
  --uninstall         stop and disable the service, remove /opt/piagent, the unit, the
                      modules-load.d file and the /usr/local/bin link; keep /etc/piagent
                      (config and key)
  --purge             --uninstall, and remove /etc/piagent and /var/lib/piagent too
                      (the piagent user stays: userdel piagent removes it)
  --root DIR          write every file under DIR instead of / (a throwaway tree for tests
                      and inspection); implies --no-system. A venv is not relocatable: the
                      one under DIR runs from DIR only (for an SD-card image, run this
                      script inside the image's chroot instead)
  --no-system         leave the system alone: no apt, no useradd/usermod/groupadd, no
                      chown to users that may not exist, no systemctl, modprobe or
                      piagent setup; print each command that would have run instead. Root
                      is not needed then.
  --python PYTHON     the interpreter that creates the venv (default: /usr/bin/python3)
  --pip-args "ARGS"   extra arguments for pip install, split on spaces. For an offline
                      install: --pip-args "--no-index --find-links /path/to/wheels".
                      The tests use --pip-args "--no-deps --no-build-isolation" with the
                      dependencies on PYTHONPATH, so that the venv, the build and the
                      install of piagent itself are real but nothing is downloaded.
  -h, --help          this help

Environment: ELEVENLABS_API_KEY (the API key to install).
EOF
}

# --- Options ------------------------------------------------------------------------------
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="$(dirname "$script_dir")"
root=""
system=1
uninstall=0
purge=0
start=0
api_key_file=""
python=/usr/bin/python3
pip_args=""
agent_id=""
server=""
setup_mode=auto  # auto: after a fresh config or with --agent-id/--server; yes; no

die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --source) need_value "$@"; source_dir="$2"; shift 2 ;;
        --api-key-file) need_value "$@"; api_key_file="$2"; shift 2 ;;
        --start) start=1; shift ;;
        --agent-id) need_value "$@"; agent_id="$2"; shift 2 ;;
        --server) need_value "$@"; server="$2"; shift 2 ;;
        --setup) setup_mode=yes; shift ;;
        --no-setup) setup_mode=no; shift ;;
        --uninstall) uninstall=1; shift ;;
        --purge) uninstall=1; purge=1; shift ;;
        --root) need_value "$@"; root="$2"; system=0; shift 2 ;;
        --no-system) system=0; shift ;;
        --python) need_value "$@"; python="$2"; shift 2 ;;
        --pip-args) need_value "$@"; pip_args="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

if [ -n "$root" ]; then
    root="$(realpath -m -- "$root")"
    [ "$root" != / ] || root=""  # --root /: the real paths, still without the system steps
fi
if [ "$system" = 1 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...), or use --no-system / --root DIR"
fi
if [ "$system" = 0 ] && [ "$start" = 1 ]; then
    die "--start needs systemctl, which --no-system and --root leave alone"
fi
if [ "$setup_mode" = no ] && [ -n "$agent_id$server" ]; then
    die "--agent-id and --server are written into the config by piagent setup: drop --no-setup"
fi

# Paths as the installed system sees them; $root is prefixed only where files are written.
readonly PREFIX=/opt/piagent
readonly VENV=$PREFIX/venv
readonly SRC=$PREFIX/src
readonly SOURCE_STAMP=$PREFIX/.source.sha256
readonly ETC=/etc/piagent
readonly CONFIG=$ETC/config.yaml
readonly KEY=$ETC/api_key
readonly UNIT=/etc/systemd/system/piagent.service
readonly STATE=/var/lib/piagent
readonly CACHE=/var/cache/piagent
readonly LINK=/usr/local/bin/piagent
readonly USER_NAME=piagent
readonly MODULES_LOAD=/etc/modules-load.d/piagent.conf
# From Debian, always: the venv and the build of piagent itself (setuptools, and wheel,
# which setuptools before 70.1 needs to build one), ALSA's tools (aplay/arecord -l, amixer)
# and the daemon's native dependencies, built for this architecture by Debian.
readonly APT_PACKAGES=(python3-venv python3-setuptools python3-wheel alsa-utils
                       python3-numpy python3-scipy python3-pyaudio python3-systemd python3-yaml
                       libspeexdsp1)
# From Debian when its version is at least the minimum pyproject.toml declares, otherwise
# from pip (both publish pure-Python wheels): Debian package -> pyproject.toml's name.
readonly -A APT_IF_RECENT=([python3-websockets]=websockets [python3-gpiozero]=gpiozero)
readonly SUPPORTED_ARCHITECTURES="arm64 armhf amd64"
readonly MIN_PYTHON=3.11
# What is copied to $SRC: what pip needs to build piagent, and the files it refers to.
readonly SOURCE_FILES=(pyproject.toml README.md config.yaml.example piagent systemd)

at() { printf '%s%s' "$root" "$1"; }          # a path of the installed system, on disk here
say() { printf '%-12s %s\n' "$1:" "${*:2}"; }  # one line per step: what it found or did
# Run a command that changes the system, or with --no-system only show it.
run_system() {
    if [ "$system" = 1 ]; then
        "$@"
    else
        say "$step" "skipped (--no-system), would run: $*"
    fi
}
systemd_running() { [ "$system" = 1 ] && [ -d /run/systemd/system ]; }

# --- Uninstall ----------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
    step=service
    if systemd_running && systemctl cat piagent.service >/dev/null 2>&1; then
        systemctl disable --now piagent.service 2>&1 | sed 's/^/  /'
        say "$step" "stopped and disabled"
    elif [ "$system" = 1 ]; then
        say "$step" "not running (no systemd, or no unit)"
    else
        run_system systemctl disable --now piagent.service
    fi
    step=unit
    if [ -e "$(at "$UNIT")" ]; then
        rm -f -- "$(at "$UNIT")"
        say "$step" "removed $UNIT"
        if systemd_running; then systemctl daemon-reload; else run_system systemctl daemon-reload; fi
    else
        say "$step" "not installed"
    fi
    step=modules
    if [ -e "$(at "$MODULES_LOAD")" ]; then
        rm -f -- "$(at "$MODULES_LOAD")"
        say "$step" "removed $MODULES_LOAD (snd stays loaded until the next boot)"
    else
        say "$step" "not installed"
    fi
    step="link"
    if [ -L "$(at "$LINK")" ] && [ "$(readlink -- "$(at "$LINK")")" = "$VENV/bin/piagent" ]; then
        rm -f -- "$(at "$LINK")"
        say "$step" "removed $LINK"
    else
        say "$step" "not installed"
    fi
    # remove_tree STEP PATH IF-ABSENT [NOTE]: delete a directory of the installed system.
    remove_tree() {
        if [ -e "$(at "$2")" ]; then
            rm -rf -- "$(at "$2")"
            say "$1" "removed $2${4:+ ($4)}"
        else
            say "$1" "$3"
        fi
    }
    remove_tree software "$PREFIX" "not installed"
    remove_tree cache "$CACHE" "not present" "resampling filters, designed again at the next start"
    step=config
    if [ "$purge" = 1 ]; then
        for dir in "$ETC" "$STATE"; do
            remove_tree "$step" "$dir" "$dir not present"
        done
        say user "$USER_NAME kept (userdel $USER_NAME removes it)"
    elif [ -e "$(at "$ETC")" ]; then
        say "$step" "kept $ETC (config and API key; --purge removes them)"
    else
        say "$step" "not present"
    fi
    exit 0
fi

# --- Install ------------------------------------------------------------------------------
if [ ! -f "$source_dir/pyproject.toml" ] || [ ! -f "$source_dir/piagent/__init__.py" ]; then
    die "$source_dir is not a piagent source tree (no pyproject.toml and piagent/)"
fi
source_dir="$(cd "$source_dir" && pwd)"
changed=0  # set when this run changed anything the running service uses
config_new=0  # set when this run installed the config from config.yaml.example

# The API key, checked before anything is changed.
key=""
key_from=""
if [ -n "$api_key_file" ]; then
    [ -r "$api_key_file" ] || die "cannot read the API key file $api_key_file"
    key="$(<"$api_key_file")"
    key_from="$api_key_file"
elif [ -n "${ELEVENLABS_API_KEY:-}" ]; then
    key="$ELEVENLABS_API_KEY"
    key_from="\$ELEVENLABS_API_KEY"
fi
if [ -n "$key_from" ]; then
    # Trim surrounding whitespace, as the daemon does.
    key="${key#"${key%%[![:space:]]*}"}"
    key="${key%"${key##*[![:space:]]}"}"
    [ -n "$key" ] || die "the API key from $key_from is empty"
    [[ $key != *[[:space:]]* ]] || die "the API key from $key_from contains spaces or lines"
fi

step=preflight
# What the install needs from this system, checked before anything is changed: every problem
# is named on its own line, then nothing is done.
problems=()
problem() { problems+=("$*"); }  # problem WORDS...: one line of the report
if ! command -v dpkg >/dev/null || ! command -v dpkg-query >/dev/null \
    || ! command -v apt-get >/dev/null || ! command -v apt-cache >/dev/null; then
    problem "not a Debian-based system (no dpkg or apt-get): piagent's installer needs" \
        "Raspberry Pi OS or Debian, bookworm or later"
    arch="$(uname -m)"
else
    arch="$(dpkg --print-architecture)"
    if [[ " $SUPPORTED_ARCHITECTURES " != *" $arch "* ]]; then
        problem "unsupported architecture $arch ($(uname -m)): piagent supports" \
            "${SUPPORTED_ARCHITECTURES// /, } (64-bit or 32-bit Raspberry Pi OS, or a PC)"
    fi
fi
# version_at_least A B: whether version A >= version B (Debian epochs and revisions ignored).
version_at_least() {
    local a="${1#*:}" b="${2#*:}"
    a="${a%%-*}" b="${b%%-*}"
    printf '%s\n%s\n' "$b" "$a" | sort -V -C
}
# apt_version PACKAGE installed|candidate: the version dpkg has installed or apt would
# install; empty when none.
apt_version() {
    local version
    if [ "$2" = installed ]; then
        version="$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null || true)"
        [[ $version == "install ok installed "* ]] && printf '%s' "${version##* }"
    else
        version="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
        [ "$version" = "(none)" ] || printf '%s' "$version"
    fi
    return 0
}
python_version=""
if [ -x "$(at "$VENV/bin/python")" ] || command -v "$python" >/dev/null; then
    interpreter="$python"
    [ -x "$(at "$VENV/bin/python")" ] && interpreter="$(at "$VENV/bin/python")"
    python_version="$("$interpreter" -c 'import sys; print(*sys.version_info[:3], sep=".")' \
        2>/dev/null)" || python_version=""
    if [ -z "$python_version" ]; then
        problem "$interpreter does not run (--python names another interpreter)"
    elif ! version_at_least "$python_version" "$MIN_PYTHON"; then
        problem "Python $python_version ($interpreter) is too old: piagent needs Python" \
            ">= $MIN_PYTHON (Debian 12 bookworm, Raspberry Pi OS Bookworm, or later)"
    fi
elif [ "$python" = /usr/bin/python3 ] && [ "${#problems[@]}" -eq 0 ]; then
    # A minimal Debian has no Python at all: apt installs it with python3-venv, if it is
    # recent enough.
    python_version="$(apt_version python3 candidate)"
    if [ -z "$python_version" ]; then
        problem "no /usr/bin/python3, and apt has no python3 package (apt-get update?)"
    elif ! version_at_least "$python_version" "$MIN_PYTHON"; then
        problem "apt's python3 $python_version is too old: piagent needs Python" \
            ">= $MIN_PYTHON (Debian 12 bookworm, Raspberry Pi OS Bookworm, or later)"
    else
        python_version="$python_version, from apt"
    fi
else
    problem "no Python interpreter $python (--python)"
fi
if [ "${#problems[@]}" -gt 0 ]; then
    for line in "${problems[@]}"; do printf 'install.sh: error: %s\n' "$line" >&2; done
    printf 'install.sh: nothing was changed\n' >&2
    exit 1
fi
say "$step" "$arch, Python $python_version"
if [ "$system" = 1 ] && [ ! -d /run/systemd/system ]; then
    say "$step" "warning: systemd is not running here (a chroot or a container?): the" \
        "service is installed and enabled but starts only on a system booted with systemd"
fi

step=apt
# plan_packages: the Debian packages wanted (packages), those not installed yet (missing)
# and what pip must bring instead (from_pip), from apt's current package lists.
plan_packages() {
    packages=("${APT_PACKAGES[@]}")
    from_pip=()
    local p name minimum installed candidate
    # python3-lgpio is in Raspberry Pi OS's archive (and perhaps Debian's, later).
    if apt-cache show python3-lgpio >/dev/null 2>&1; then packages+=(python3-lgpio); fi
    for p in "${!APT_IF_RECENT[@]}"; do
        name="${APT_IF_RECENT[$p]}"
        # The minimum is pyproject.toml's: "websockets>=13.0",
        minimum="$(sed -n "s/^ *\"$name>=\([0-9.]*\)\".*/\1/p" "$source_dir/pyproject.toml")"
        [ -n "$minimum" ] || die "no \"$name>=...\" dependency in $source_dir/pyproject.toml"
        installed="$(apt_version "$p" installed)"
        candidate="$(apt_version "$p" candidate)"
        if [ -n "$installed" ] && version_at_least "$installed" "$minimum"; then
            packages+=("$p")
        elif [ -n "$candidate" ] && version_at_least "$candidate" "$minimum"; then
            packages+=("$p")
        else
            from_pip+=("$name>=$minimum (apt has ${p} ${candidate:-in no version})")
        fi
    done
    missing=()
    for p in "${packages[@]}"; do
        [ -n "$(apt_version "$p" installed)" ] || missing+=("$p")
    done
}
plan_packages
if [ "${#missing[@]}" -gt 0 ] && [ "$system" = 1 ]; then
    # Fresh package lists first, then decide again: a candidate's version may change.
    apt_log="$(mktemp)"
    trap 'rm -f -- "$apt_log"' EXIT
    if ! apt-get update >"$apt_log" 2>&1; then
        sed 's/^/  /' "$apt_log" >&2
        die "apt-get update failed (above)"
    fi
    plan_packages
fi
if [ "${#missing[@]}" -eq 0 ]; then
    say "$step" "already installed"
elif [ "$system" = 1 ]; then
    say "$step" "installing ${missing[*]}"
    # No recommends: a Pi's SD card needs none of them (the GPIO drivers piagent uses are
    # named above).
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >"$apt_log" 2>&1; then
        sed 's/^/  /' "$apt_log" >&2
        die "apt-get install failed (above)"
    fi
else
    run_system apt-get install -y --no-install-recommends "${missing[@]}"
fi
for p in "${from_pip[@]}"; do say "$step" "from pip, as a wheel: $p"; done

step=user
if [ "$system" = 0 ]; then
    say "$step" "skipped (--no-system), would run where the gpio group does not exist:" \
        "groupadd --system gpio"
    run_system useradd --system --user-group --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin "$USER_NAME"
    run_system usermod -aG audio,gpio "$USER_NAME"
else
    if ! getent group gpio >/dev/null; then
        # Off a Pi there is no gpio group, and SupplementaryGroups=gpio would stop the
        # service from starting (216/GROUP). An empty group is harmless there.
        groupadd --system gpio
        say "$step" "created the group gpio (not Raspberry Pi OS? GPIO needs its udev rules)"
    fi
    if id -u "$USER_NAME" >/dev/null 2>&1; then
        say "$step" "already installed ($USER_NAME)"
    else
        useradd --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "piagent voice terminal" "$USER_NAME"
        say "$step" "created the system user $USER_NAME"
    fi
    groups=" $(id -nG "$USER_NAME") "
    if [[ $groups == *" audio "* && $groups == *" gpio "* ]]; then
        say "$step" "already in the groups audio and gpio"
    else
        usermod -aG audio,gpio "$USER_NAME"
        say "$step" "added $USER_NAME to the groups audio and gpio"
    fi
fi

step=software
# A fingerprint of the source files: the venv is rebuilt only when they changed.
source_hash="$(cd "$source_dir" \
    && find "${SOURCE_FILES[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ -x "$(at "$VENV/bin/piagent")" ] && [ -f "$(at "$SOURCE_STAMP")" ] \
    && [ "$(cat "$(at "$SOURCE_STAMP")")" = "$source_hash" ]; then
    say "$step" "already installed ($PREFIX, source unchanged)"
else
    install -d -m 0755 "$(at "$PREFIX")"
    rm -rf -- "$(at "$SRC")" "$(at "$SOURCE_STAMP")"
    install -d -m 0755 "$(at "$SRC")"
    tar -C "$source_dir" --exclude=__pycache__ --exclude='*.py[co]' -cf - "${SOURCE_FILES[@]}" \
        | tar -C "$(at "$SRC")" --no-same-owner -xf -
    if [ ! -x "$(at "$VENV/bin/python")" ]; then
        command -v "$python" >/dev/null || die "no $python to create the venv with (--python)"
        "$python" -m venv --system-site-packages "$(at "$VENV")"
    fi
    read -r -a extra_pip_args <<<"$pip_args"
    # A plain install of a directory always rebuilds and reinstalls piagent, and installs
    # only the dependencies that are missing (or older than piagent needs): those Debian
    # installed above are seen through --system-site-packages and left alone.
    # --no-build-isolation: piagent is built with Debian's setuptools, not one downloaded.
    # --only-binary=:all:: what pip must fetch comes as a wheel; nothing is compiled here.
    # Root installing into a venv is intended.
    if ! PIP_ROOT_USER_ACTION=ignore "$(at "$VENV/bin/python")" -m pip install --quiet \
        --disable-pip-version-check --no-input --no-build-isolation --only-binary=:all: \
        "${extra_pip_args[@]}" "$(at "$SRC")"; then
        die "pip could not install piagent into $VENV (above)"
    fi
    rm -rf -- "$(at "$SRC")/build" "$(at "$SRC")"/*.egg-info
    printf '%s\n' "$source_hash" >"$(at "$SOURCE_STAMP")"
    say "$step" "installed $PREFIX (venv and source)"
    changed=1
fi

step=selfcheck
# Import everything the daemon imports, in the venv, now: a missing library or a module too
# old fails the install here, not the service at its first start. -P: the current
# directory (a checkout, perhaps) must not stand in for the installed piagent.
if selfcheck_output="$("$(at "$VENV/bin/python")" -P -m piagent.selfcheck 2>&1)"; then
    say "$step" "${selfcheck_output##*$'\n'selfcheck: }"
else
    printf '%s\n' "$selfcheck_output" | sed 's/^/  /' >&2
    die "piagent does not import in $VENV: the lines marked FAILED above say what is missing"
fi

step="link"
if [ "$(readlink -- "$(at "$LINK")" 2>/dev/null)" = "$VENV/bin/piagent" ]; then
    say "$step" "already installed ($LINK)"
else
    install -d -m 0755 "$(at "$(dirname "$LINK")")"
    ln -sfn -- "$VENV/bin/piagent" "$(at "$LINK")"
    say "$step" "installed $LINK -> $VENV/bin/piagent"
fi

step=config
if [ ! -d "$(at "$ETC")" ]; then
    install -d -m 0750 "$(at "$ETC")"
    run_system chown root:"$USER_NAME" "$(at "$ETC")"
fi
if [ -e "$(at "$CONFIG")" ]; then
    if cmp -s "$source_dir/config.yaml.example" "$(at "$CONFIG")"; then
        say "$step" "already installed ($CONFIG)"
    else
        say "$step" "already installed ($CONFIG, your edits kept)"
    fi
else
    install -m 0640 "$source_dir/config.yaml.example" "$(at "$CONFIG")"
    run_system chown root:"$USER_NAME" "$(at "$CONFIG")"
    say "$step" "installed $CONFIG from config.yaml.example: edit it"
    config_new=1
fi

step=api-key
if [ -n "$key_from" ]; then
    # printf is a builtin: the key is in no process's arguments, and is never printed.
    if [ -f "$(at "$KEY")" ] && printf '%s\n' "$key" | cmp -s - "$(at "$KEY")"; then
        say "$step" "already installed ($KEY, from $key_from)"
    else
        tmp="$(umask 077 && mktemp "$(at "$ETC")/.api_key.XXXXXX")"
        printf '%s\n' "$key" >"$tmp"
        chmod 0600 "$tmp"
        [ "$system" = 0 ] || chown root:root "$tmp"
        verb=installed
        [ -e "$(at "$KEY")" ] && verb=updated
        mv -f -- "$tmp" "$(at "$KEY")"
        say "$step" "$verb $KEY from $key_from (mode 0600)"
        changed=1
    fi
elif [ -e "$(at "$KEY")" ]; then
    say "$step" "already installed ($KEY)"
else
    say "$step" "none (public agents need none; to add one, run again with" \
        "ELEVENLABS_API_KEY set or --api-key-file F)"
fi
unset key

step=setup
# piagent setup picks the sound devices (and writes --agent-id/--server) into the config.
# It asks on a terminal; without one (a script, the rig) --yes takes the first hardware
# devices. A piagent without the command (an older source) skips this step.
setup_command=("$VENV/bin/piagent" setup --config "$CONFIG")
[ -z "$agent_id" ] || setup_command+=(--agent-id "$agent_id")
[ -z "$server" ] || setup_command+=(--server "$server")
[ -t 0 ] || setup_command+=(--yes)
if [ "$setup_mode" = no ]; then
    say "$step" "skipped (--no-setup)"
elif [ "$setup_mode" = auto ] && [ "$config_new" = 0 ] && [ -z "$agent_id$server" ]; then
    say "$step" "not needed (the config was there; --setup runs it: piagent setup)"
elif ! "$(at "$VENV/bin/piagent")" setup --help >/dev/null 2>&1; then
    say "$step" "skipped: this piagent has no 'setup' command yet; edit $CONFIG instead"
elif [ "$system" = 0 ]; then
    say "$step" "skipped (--no-system), would run: ${setup_command[*]}"
else
    say "$step" "running ${setup_command[*]}"
    config_before="$(sha256sum <"$CONFIG")"
    if "${setup_command[@]}"; then
        if [ "$(sha256sum <"$CONFIG")" != "$config_before" ]; then
            say "$step" "wrote $CONFIG"
            changed=1
        else
            say "$step" "done ($CONFIG unchanged)"
        fi
    else
        # Not fatal: the install is complete, the config is only not filled in yet.
        say "$step" "failed (exit $?): run it again later: sudo piagent setup --config $CONFIG"
    fi
fi

step=unit
unit_changed=0
if cmp -s "$source_dir/systemd/piagent.service" "$(at "$UNIT")"; then
    say "$step" "already installed ($UNIT)"
else
    install -d -m 0755 "$(at "$(dirname "$UNIT")")"
    install -m 0644 "$source_dir/systemd/piagent.service" "$(at "$UNIT")"
    say "$step" "installed $UNIT"
    unit_changed=1
    changed=1
fi

step=modules
# The unit allows the sound devices by their major number's name (DeviceAllow=char-alsa),
# which systemd looks up in /proc/devices as the service starts. Until ALSA's core module is
# loaded (by the first sound card, e.g. a USB card that appears after boot) there is no
# "alsa" there, and the card would stay blocked until the service restarts. Loading snd at
# boot (systemd-modules-load runs before any service) makes the name always known.
modules_text="# Written by piagent's scripts/install.sh (--uninstall removes it). piagent.service
# allows the sound devices by the name of their major number (DeviceAllow=char-alsa), which
# systemd finds in /proc/devices when the service starts: ALSA's core must be loaded by then,
# even when the sound card (USB) appears later.
snd"
modules_new=0
if [ -f "$(at "$MODULES_LOAD")" ] && [ "$(cat "$(at "$MODULES_LOAD")")" = "$modules_text" ]; then
    say "$step" "already installed ($MODULES_LOAD)"
else
    install -d -m 0755 "$(at "$(dirname "$MODULES_LOAD")")"
    printf '%s\n' "$modules_text" >"$(at "$MODULES_LOAD")"
    chmod 0644 "$(at "$MODULES_LOAD")"
    say "$step" "installed $MODULES_LOAD (snd: ALSA's core, loaded at boot)"
    modules_new=1
fi
# And now, so that it holds without a reboot.
if [ "$system" = 0 ]; then
    [ "$modules_new" = 0 ] || run_system modprobe snd
elif grep -qw alsa /proc/devices 2>/dev/null; then
    :  # loaded already (or built into the kernel)
elif modprobe snd 2>/dev/null && grep -qw alsa /proc/devices; then
    say "$step" "loaded snd (ALSA's core) now"
    changed=1  # a running service resolved char-alsa without it: restart it
else
    say "$step" "note: modprobe snd failed (no sound support in this kernel, or a" \
        "container); the sound devices are allowed once ALSA is loaded and the service restarts"
fi

step=service
if [ "$system" = 0 ]; then
    [ "$unit_changed" = 0 ] || run_system systemctl daemon-reload
    run_system systemctl enable piagent.service
elif ! systemd_running; then
    say "$step" "systemd is not running here: enable it later with systemctl enable piagent"
else
    if [ "$unit_changed" = 1 ]; then systemctl daemon-reload; fi
    if systemctl is-enabled --quiet piagent.service; then
        say "$step" "already enabled"
    else
        systemctl enable --quiet piagent.service
        say "$step" "enabled (starts at boot)"
    fi
    start_blocked=""
    if [ "$start" = 1 ]; then
        # The config is checked here, so that a broken one is reported by the installer,
        # not by a unit failing in a loop. An unset agent.agent_id (the example's null) is
        # the first run: not an error, but nothing to start yet.
        agent_id_set=0
        "$VENV/bin/python" -P -c '
import sys, yaml
try:
    with open(sys.argv[1]) as file:
        data = yaml.safe_load(file)
except Exception:
    sys.exit(2)  # unreadable: check-config says why
agent = data.get("agent") if isinstance(data, dict) else None
sys.exit(0 if isinstance(agent, dict) and agent.get("agent_id") else 1)
' "$CONFIG" 2>/dev/null || agent_id_set=$?
        if [ "$agent_id_set" = 1 ]; then
            start_blocked="agent.agent_id is not set in $CONFIG: set it (or run again with"
            start_blocked+=" --agent-id ID), then: sudo systemctl start piagent"
        elif ! check_output="$("$VENV/bin/piagent" check-config "$CONFIG" 2>&1)"; then
            printf '%s\n' "$check_output" | sed 's/^/  /' >&2
            die "$CONFIG has problems (above): fix them, then run again with --start"
        else
            say config "valid (piagent check-config)"
        fi
    fi
    if [ -n "$start_blocked" ]; then
        say "$step" "not started: $start_blocked"
    elif [ "$start" = 1 ]; then
        if ! systemctl is-active --quiet piagent.service; then
            systemctl start piagent.service
            say "$step" "started"
        elif [ "$changed" = 1 ]; then
            systemctl restart piagent.service
            say "$step" "restarted"
        else
            say "$step" "already running"
        fi
    elif [ "$changed" = 1 ] && systemctl is-active --quiet piagent.service; then
        say "$step" "still running the old version: sudo systemctl restart piagent"
    fi
fi

cat <<EOF

Next steps:
  1. Set agent.agent_id, the audio devices and the GPIO pins in $CONFIG
     (the sound devices: sudo piagent setup --config $CONFIG), then check it:
       sudo piagent check-config $CONFIG
  2. sudo systemctl start piagent
  3. journalctl -u piagent -f
  4. sudo piagent doctor     (audio devices, GPIO and the network, checked as the service user)
  To use 'piagent ctl' without sudo: sudo usermod -aG piagent \$USER (then log in again).
  For the spoken prompt of 'piagent demo': sudo apt-get install espeak-ng
EOF
