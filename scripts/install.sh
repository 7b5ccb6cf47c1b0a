#!/usr/bin/env bash
# Install piagent as a systemd service on Raspberry Pi OS Bookworm. Idempotent: a second run
# changes nothing and says "already installed" for each step. See --help.
set -euo pipefail
# Whatever the caller's umask, the venv and the unit must be readable by the piagent user;
# the config and the key get their modes explicitly.
umask 022

usage() {
    cat <<'EOF'
Usage: sudo scripts/install.sh [OPTIONS]

Installs piagent as the systemd service piagent.service:
  apt packages   python3-venv python3-dev gcc pkg-config portaudio19-dev libsystemd-dev
                 libasound2-dev alsa-utils espeak-ng sox (only the missing ones), and
                 python3-lgpio where apt has it (Raspberry Pi OS: gpiozero's pin driver)
  /opt/piagent   src/ (a copy of the source) and venv/ (pip install of that copy, not -e;
                 --system-site-packages, so that Raspberry Pi OS's python3-lgpio is seen)
  user piagent   system user, home /var/lib/piagent, no login shell, groups audio and gpio
                 (the gpio group is created where it does not exist, e.g. off a Pi)
  /etc/piagent   config.yaml from config.yaml.example, only if absent (0640 root:piagent);
                 api_key (0600 root:root, read by systemd's LoadCredential=) when
                 $ELEVENLABS_API_KEY is set or --api-key-file is given; never printed
  the unit       /etc/systemd/system/piagent.service, daemon-reload, enable (not start)
  /usr/local/bin/piagent -> /opt/piagent/venv/bin/piagent

Options:
  --source DIR        the piagent source to install (default: this script's repository)
  --api-key-file F    install the API key read from file F (ELEVENLABS_API_KEY also works)
  --start             start the service too (restart it if this run changed something)
  --uninstall         stop and disable the service, remove /opt/piagent, the unit and the
                      /usr/local/bin link; keep /etc/piagent (config and key)
  --purge             --uninstall, and remove /etc/piagent and /var/lib/piagent too
                      (the piagent user stays: userdel piagent removes it)
  --root DIR          write every file under DIR instead of / (a throwaway tree for tests
                      and inspection); implies --no-system. A venv is not relocatable: the
                      one under DIR runs from DIR only (for an SD-card image, run this
                      script inside the image's chroot instead)
  --no-system         leave the system alone: no apt, no useradd/usermod/groupadd, no
                      chown to users that may not exist, no systemctl; print each command
                      that would have run instead. Root is not needed then.
  --python PYTHON     the interpreter that creates the venv (default: /usr/bin/python3)
  --pip-args "ARGS"   extra arguments for pip install, split on spaces. For an offline
                      install: --pip-args "--no-index --find-links /path/to/wheels".
                      The tests use --pip-args "--no-deps --no-build-isolation" with the
                      dependencies (already built) on PYTHONPATH, so that the venv, the
                      build and the install of piagent itself are real but nothing is
                      downloaded or compiled.
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
readonly APT_PACKAGES=(python3-venv python3-dev gcc pkg-config portaudio19-dev libsystemd-dev
                       libasound2-dev alsa-utils espeak-ng sox)
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

step=apt
missing=()
packages=("${APT_PACKAGES[@]}")
# python3-lgpio exists only in Raspberry Pi OS's archive.
if apt-cache show python3-lgpio >/dev/null 2>&1; then packages+=(python3-lgpio); fi
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    say "$step" "already installed"
elif [ "$system" = 1 ]; then
    say "$step" "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    run_system apt-get install -y "${missing[@]}"
fi

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
    # only the dependencies that are missing. Root installing into a venv is intended.
    PIP_ROOT_USER_ACTION=ignore "$(at "$VENV/bin/python")" -m pip install --quiet \
        --disable-pip-version-check --no-input "${extra_pip_args[@]}" "$(at "$SRC")"
    rm -rf -- "$(at "$SRC")/build" "$(at "$SRC")"/*.egg-info
    "$(at "$VENV/bin/piagent")" --help >/dev/null \
        || die "$VENV/bin/piagent does not run after the install"
    printf '%s\n' "$source_hash" >"$(at "$SOURCE_STAMP")"
    say "$step" "installed $PREFIX (venv and source)"
    changed=1
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
    if [ "$start" = 1 ]; then
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
  1. Edit $CONFIG (agent.agent_id, audio devices, GPIO pins), then check it:
       sudo piagent check-config $CONFIG
  2. sudo systemctl start piagent
  3. journalctl -u piagent -f
  4. sudo -u piagent piagent doctor     (audio devices, GPIO and the network, as the service sees them)
  To use 'piagent ctl' without sudo: sudo usermod -aG piagent \$USER (then log in again).
EOF
