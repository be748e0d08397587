#!/usr/bin/env bash
# Builds zerolab's images without needing a registry:
#   1. a Debian bookworm base: BASE_IMAGE (default debian:bookworm-slim) when it is present or can
#      be pulled, otherwise zerolab/debian-base:bookworm, built once with debootstrap + docker import;
#   2. wheelhouses (build/wheelhouse/<image>/) of the wheels docker/requirements-<image>.txt pins
#      with their hashes, for bookworm's CPython 3.11.2, downloaded on the host, because pip
#      cannot reach PyPI inside `docker build`;
#   3. oha, built on the host with cargo (bookworm's rustc is too old for it), when TOOLS asks for
#      it; a binary built earlier goes into the image anyway;
#   4. zerolab/redis, zerolab/server, zerolab/loadgen and zerolab/nginx (the ceiling: Debian's
#      nginx serving server/public/), labelled with the git commit; zerolab/zerohttpd too when
#      ZEROHTTPD names a checkout of the article's C servers that its user built with its own
#      Makefile (never compiled or fetched here); zerolab/swarm-node (a Docker Engine in a
#      container, the nodes of `make swarm-lab`) only when IMAGES names it.
#
# Environment: TOOLS (the load generators wanted, e.g. "wrk oha"; default wrk, which is always
# there), BASE_IMAGE, WRK2 (path to a wrk2 binary for the loadgen image), ZEROHTTPD (path to a
# built ZeroHTTPd checkout), IMAGES (which images to build; default all of the above), PYTHON (runs pip),
# ZL_TAG (image tag, default latest), DEBIAN_MIRROR, PULL_TIMEOUT (seconds), VERBOSE=1 (show the
# docker build output instead of keeping it in build/logs/), ZL_CACHE (where oha is kept).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build"
LOGS="$BUILD/logs"
PYTHON="${PYTHON:-python3}"
WRK2="${WRK2:-}"
ZEROHTTPD="${ZEROHTTPD:-}"
ZEROHTTPD_ARCHS="iterative forking preforked threaded prethreaded poll epoll"
KNOWN_IMAGES="redis server loadgen nginx zerohttpd swarm-node"
IMAGES="${IMAGES:-redis server loadgen nginx${ZEROHTTPD:+ zerohttpd}}"
TOOLS="${TOOLS:-wrk}"
KNOWN_TOOLS="wrk wrk2 oha"
TAG="${ZL_TAG:-latest}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PULL_TIMEOUT="${PULL_TIMEOUT:-20}"
DEFAULT_BASE="debian:bookworm-slim"
LOCAL_BASE="zerolab/debian-base:bookworm"
OHA_VERSION="1.16.0"
# Outside the work tree, so fresh clones on the same machine reuse the ten-minute build.
OHA_ROOT="${ZL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zerolab}/oha-$OHA_VERSION"
# Set by check_oha: whether the loadgen image gets oha.
HAVE_OHA=0
WHEELHOUSE="$BUILD/wheelhouse"
# Bookworm's python3 is 3.11.2: wheels are chosen for that interpreter, not the host's.
PIP_TARGET=(--only-binary=:all: --implementation cp --python-version 3.11.2 --abi cp311
            --platform manylinux_2_36_x86_64 --platform manylinux2014_x86_64
            --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64 --platform any)

STARTED=$SECONDS
# Turn signals into an ordinary exit so that EXIT traps (removing a half-built root file
# system) run on Ctrl-C too.
trap 'exit 130' INT
trap 'exit 143' TERM
step() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '    warning: %s\n' "$*" >&2; }
die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# 1. Base image

# debootstrap mounts /proc and /sys inside its target: never delete through a mount.
remove_rootfs() {
    local dir="$1" m
    [[ -e "$dir" ]] || return 0
    for m in $(findmnt -rn -o TARGET | grep -F "$dir/" | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    if findmnt -rn -o TARGET | grep -qF "$dir/"; then
        die "file systems are still mounted under $dir: unmount them, then remove it"
    fi
    rm -rf --one-file-system "$dir"
}

build_base() {
    [[ "$(id -u)" -eq 0 ]] || die "building $LOCAL_BASE runs debootstrap, which needs root; run as root or set BASE_IMAGE to a bookworm image you have"
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap), and no base image is available; set BASE_IMAGE to a bookworm image you have"
    local dir="$BUILD/debian-base-rootfs" t0=$SECONDS
    remove_rootfs "$dir"
    trap 'remove_rootfs "'"$dir"'"' EXIT
    mkdir -p "$dir" "$LOGS"
    info "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (about a minute; log: build/logs/debootstrap.log)"
    if ! debootstrap --variant=minbase bookworm "$dir" "$DEBIAN_MIRROR" >"$LOGS/debootstrap.log" 2>&1; then
        tail -n 20 "$LOGS/debootstrap.log" >&2
        die "debootstrap failed (full log: build/logs/debootstrap.log)"
    fi
    # What Debian's own container images do: no services started by package scripts, no
    # documentation, no downloaded package lists kept in the image.
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 755 "$dir/usr/sbin/policy-rc.d"
    cat >"$dir/etc/dpkg/dpkg.cfg.d/zerolab-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$dir/etc/apt/apt.conf.d/90zerolab"
    # apt's binary caches would add 80 MB to every layer that runs apt-get.
    cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* \
        "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/log/*.log
    info "docker import $LOCAL_BASE"
    tar --numeric-owner -C "$dir" -c . \
        | docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            --message "debootstrap --variant=minbase bookworm $DEBIAN_MIRROR" \
            - "$LOCAL_BASE" >/dev/null \
        || die "docker import of the bookworm root file system failed"
    remove_rootfs "$dir"
    trap - EXIT
    info "built $LOCAL_BASE in $((SECONDS - t0)) s"
}

pick_base() {
    local wanted="${BASE_IMAGE:-$DEFAULT_BASE}"
    if image_exists "$wanted"; then
        BASE="$wanted"; info "using $BASE (present locally)"; return
    fi
    # A base built earlier means an earlier pull failed: do not spend the pull timeout again.
    if [[ -z "${BASE_IMAGE:-}" ]] && image_exists "$LOCAL_BASE"; then
        BASE="$LOCAL_BASE"
        info "using $BASE (built earlier from Debian packages; remove it to try pulling $wanted again)"
        return
    fi
    info "$wanted is not present: trying docker pull (at most ${PULL_TIMEOUT} s)"
    if timeout "$PULL_TIMEOUT" docker pull -q "$wanted" >/dev/null 2>&1 && image_exists "$wanted"; then
        BASE="$wanted"; info "using $BASE (pulled)"; return
    fi
    [[ -n "${BASE_IMAGE:-}" ]] && warn "BASE_IMAGE=$BASE_IMAGE is neither present nor pullable: falling back to $LOCAL_BASE"
    if ! image_exists "$LOCAL_BASE"; then
        info "no registry reachable: building $LOCAL_BASE from Debian packages"
        build_base
    fi
    BASE="$LOCAL_BASE"; info "using $BASE"
}

# ---------------------------------------------------------------------------------------------
# 2. Wheelhouses, one per image so that one image's pins never invalidate the other's layers

fetch_wheels() {
    local name="$1" req="$ROOT/docker/requirements-$1.txt"
    local dir="$WHEELHOUSE/$name" stamp="$WHEELHOUSE/$name/requirements.txt"
    [[ -f "$req" ]] || die "missing $req"
    if [[ -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
        info "$name: wheelhouse up to date ($(ls "$dir" | grep -c '\.whl$') wheels)"
        return
    fi
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "PYTHON=$PYTHON has no pip; run 'make venv' or set PYTHON"
    info "$name: pip download (CPython 3.11.2, manylinux x86_64) from docker/requirements-$name.txt"
    # Download into a fresh folder and swap it in, so a failure never leaves a half wheelhouse
    # and a changed pin never leaves a stale wheel behind. Every wheel must match a hash of the
    # lock file; the image checks them again when it installs.
    local tmp="$WHEELHOUSE/.$name.tmp"
    rm -rf "$tmp"; mkdir -p "$tmp" "$LOGS"
    if ! "$PYTHON" -m pip download --disable-pip-version-check --quiet "${PIP_TARGET[@]}" \
            --require-hashes --dest "$tmp" -r "$req" >"$LOGS/wheels-$name.log" 2>&1; then
        tail -n 20 "$LOGS/wheels-$name.log" >&2
        rm -rf "$tmp"
        die "pip download for the $name image failed (is PyPI reachable from this host? log: build/logs/wheels-$name.log)"
    fi
    ls "$tmp" | grep -q '^async_timeout-' \
        || die "$name wheelhouse lacks async-timeout, which redis-py needs on Python 3.11.2: was docker/requirements-$name.txt locked by 'make lock'?"
    cp "$req" "$tmp/requirements.txt"
    rm -rf "$dir"; mv "$tmp" "$dir"
    info "$name: $(ls "$dir" | grep -c '\.whl$') wheels in build/wheelhouse/$name"
}

# ---------------------------------------------------------------------------------------------
# 3. Load-generator binaries

wants() { [[ " $TOOLS " == *" $1 "* ]]; }

check_tools() {
    local t
    for t in $TOOLS; do
        [[ " $KNOWN_TOOLS " == *" $t "* ]] || die "TOOLS=\"$TOOLS\": unknown tool '$t' (known: $KNOWN_TOOLS)"
    done
}

# oha when TOOLS asks for it (built once per machine), or when a build of it is already there.
check_oha() {
    local bin="$OHA_ROOT/bin/oha"
    if wants oha; then
        build_oha
        HAVE_OHA=1
    elif [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "^oha $OHA_VERSION"; then
        HAVE_OHA=1
        info "oha $OHA_VERSION: $bin (built earlier)"
    else
        info "oha: not built, no tool asked for it (make images TOOLS=oha adds it; cargo, about ten minutes once)"
    fi
}

build_oha() {
    local bin="$OHA_ROOT/bin/oha"
    mkdir -p "$BUILD" "$LOGS"
    # One build at a time: a second `make images` waits for the first one's cargo.
    exec 9>"$BUILD/.oha.lock"
    flock 9
    if [[ ! -x "$bin" ]]; then
        # Another cargo may already be writing there (a build started by hand, say): wait for it.
        while pgrep -f "cargo install oha .*--root $OHA_ROOT( |\$)" >/dev/null 2>&1; do
            info "oha: waiting for the running cargo build into $OHA_ROOT"
            sleep 10
        done
    fi
    if [[ ! -x "$bin" ]]; then
        command -v cargo >/dev/null || die "oha $OHA_VERSION is missing and cargo is not installed: install Rust (rustup.rs), or put an oha $OHA_VERSION binary at $OHA_ROOT/bin/oha"
        info "oha: cargo install oha --version $OHA_VERSION --locked (several minutes; log: build/logs/oha.log)"
        if ! cargo install oha --version "$OHA_VERSION" --locked --root "$OHA_ROOT" >"$LOGS/oha.log" 2>&1; then
            tail -n 20 "$LOGS/oha.log" >&2
            die "building oha failed (needs a recent Rust toolchain and crates.io; log: build/logs/oha.log)"
        fi
    fi
    exec 9>&-
    "$bin" --version 2>/dev/null | grep -q "^oha $OHA_VERSION" \
        || die "$OHA_ROOT/bin/oha does not say 'oha $OHA_VERSION'; remove $OHA_ROOT and rerun"
    info "oha $OHA_VERSION: $OHA_ROOT/bin/oha"
}

check_wrk2() {
    if [[ -z "$WRK2" ]]; then
        if wants wrk2; then
            warn "wrk2 is asked for but none given: runs with tool wrk2 will fail (make images WRK2=/path/to/wrk2)"
        else
            info "wrk2: none given (WRK2=/path/to/wrk2 adds it to the loadgen image)"
        fi
        return
    fi
    [[ -f "$WRK2" ]] || die "WRK2=$WRK2: no such file"
    [[ -x "$WRK2" ]] || die "WRK2=$WRK2 is not executable (chmod +x it)"
    local out
    out="$(timeout 10 "$WRK2" -v 2>&1 || true)"
    [[ "$out" == *"wrk 4.0.0"* ]] \
        || die "WRK2=$WRK2: '$WRK2 -v' should say 'wrk 4.0.0' (wrk2 from github.com/giltene/wrk2) but said: ${out%%$'\n'*}"
    info "wrk2: $WRK2 (${out%%$'\n'*})"
}

building() { [[ " $IMAGES " == *" $1 "* ]]; }

check_images() {
    local i
    for i in $IMAGES; do
        [[ " $KNOWN_IMAGES " == *" $i "* ]] || die "IMAGES=\"$IMAGES\": unknown image '$i' (known: $KNOWN_IMAGES)"
    done
    if building zerohttpd && [[ -z "$ZEROHTTPD" ]]; then
        die "IMAGES names zerohttpd but ZEROHTTPD is not set: make images ZEROHTTPD=/path/to/zerohttpd"
    fi
}

# The article's C servers, as the user built them: what the image needs is checked here, on the
# host, so that a missing piece is named before any build; whether each binary runs on the
# image's base is checked inside the build (docker/zerohttpd-check.sh).
check_zerohttpd() {
    local dir="$ZEROHTTPD" arch missing=()
    [[ -d "$dir" ]] || die "ZEROHTTPD=$dir: no such folder (a checkout of github.com/shuveb/zerohttpd, built with its own 'make all')"
    for arch in $ZEROHTTPD_ARCHS; do
        [[ -f "$dir/$arch" && -x "$dir/$arch" ]] || missing+=("$arch")
    done
    if (( ${#missing[@]} )); then
        die "ZEROHTTPD=$dir: no executable ${missing[*]}: run 'make all' in the checkout (its plain 'make' builds only iterative), then make images ZEROHTTPD=$dir again"
    fi
    local file
    for file in public/index.html templates/guestbook/index.html; do
        [[ -f "$dir/$file" ]] || die "ZEROHTTPD=$dir: no $file (the servers open it relative to the checkout's root)"
    done
    ZEROHTTPD_REVISION="$(git -C "$dir" rev-parse HEAD 2>/dev/null || echo unknown)"
    info "zerohttpd: $dir (commit $ZEROHTTPD_REVISION): $ZEROHTTPD_ARCHS"
}

# ---------------------------------------------------------------------------------------------
# 4. Images, each from a small staged context so that an unchanged tree hits the layer cache

# copy_package SRC DEST: a Python package without caches, keeping modification times.
copy_package() {
    local src="$1" dest="$2"
    mkdir -p "$dest"
    if [[ -d "$src" ]]; then
        cp -a "$src/." "$dest/"
        find "$dest" \( -name __pycache__ -o -name '*.pyc' -o -name '.pytest_cache' \) -prune -exec rm -rf {} +
    fi
    if [[ ! -f "$src/__main__.py" ]]; then
        warn "${src#"$ROOT"/}/__main__.py does not exist yet: the image is built, but its command will fail until the package lands"
    fi
}

stage() {
    local name="$1" ctx="$BUILD/context-$1"
    rm -rf "$ctx"; mkdir -p "$ctx"
    cp -a "$ROOT/docker/$name.Dockerfile" "$ctx/Dockerfile"
    case "$name" in
        server)
            cp -a "$WHEELHOUSE/server" "$ctx/wheels"
            copy_package "$ROOT/server" "$ctx/server"
            ;;
        loadgen)
            cp -a "$WHEELHOUSE/loadgen" "$ctx/wheels"
            mkdir -p "$ctx/oha" "$ctx/wrk2"
            if [[ "$HAVE_OHA" == 1 ]]; then cp -a "$OHA_ROOT/bin/oha" "$ctx/oha/oha"; fi
            if [[ -n "$WRK2" ]]; then cp -p "$WRK2" "$ctx/wrk2/wrk2"; fi
            copy_package "$ROOT/loadgen" "$ctx/loadgen"
            ;;
        nginx)
            cp -a "$ROOT/docker/nginx.conf" "$ctx/nginx.conf"
            cp -a "$ROOT/server/public" "$ctx/public"
            ;;
        zerohttpd)
            cp -a "$ROOT/docker/zerohttpd-check.sh" "$ROOT/docker/zerohttpd-entrypoint.sh" "$ctx/"
            mkdir -p "$ctx/checkout"
            local arch
            for arch in $ZEROHTTPD_ARCHS; do cp -p "$ZEROHTTPD/$arch" "$ctx/checkout/$arch"; done
            # Only what the servers open at run time: no sources, no .git.
            cp -a "$ZEROHTTPD/public" "$ZEROHTTPD/templates" "$ctx/checkout/"
            ;;
    esac
}

build_image() {
    local name="$1" image="zerolab/$1:$TAG" ctx="$BUILD/context-$1" t0=$SECONDS
    stage "$name"
    # --force-rm: a step that fails (a C binary refused by its check, say) leaves no container.
    local args=(build --force-rm --build-arg "BASE_IMAGE=$BASE" --label "org.opencontainers.image.revision=$REVISION"
                --label "org.opencontainers.image.source=zerolab" -t "$image" "$ctx")
    if [[ "$name" == zerohttpd ]]; then
        # Which checkout the binaries came from, for whoever reads a result's image id later.
        args+=(--label "io.zerolab.zerohttpd.checkout=$(cd "$ZEROHTTPD" && pwd)"
               --label "io.zerolab.zerohttpd.revision=$ZEROHTTPD_REVISION")
    fi
    if [[ "${VERBOSE:-}" == 1 ]]; then
        docker "${args[@]}" || die "docker build of $image failed"
    elif ! docker "${args[@]}" >"$LOGS/image-$name.log" 2>&1; then
        # A refused ZeroHTTPd binary says why in lines of its own; anything else, the log's tail.
        if [[ "$name" == zerohttpd ]] && grep -q 'zerohttpd: ' "$LOGS/image-$name.log"; then
            grep -o 'zerohttpd: .*' "$LOGS/image-$name.log" | sed 's/^/    /' >&2
            die "ZEROHTTPD=$ZEROHTTPD: refused, see above (log: build/logs/image-$name.log)"
        fi
        tail -n 30 "$LOGS/image-$name.log" >&2
        die "docker build of $image failed (log: build/logs/image-$name.log)"
    fi
    local id size
    id="$(docker image inspect -f '{{.Id}}' "$image")"
    size="$(docker image inspect -f '{{.Size}}' "$image")"
    info "$image ${id:7:12} $((size / 1000000)) MB ($((SECONDS - t0)) s)"
}

revision() {
    local rev
    rev="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null)" || { echo unknown; return; }
    # Same rule as lab/facts.py: tracked files only.
    [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && rev="$rev-dirty"
    echo "$rev"
}

main() {
    command -v docker >/dev/null || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, and may this user use it?)"
    check_tools
    check_images
    if building zerohttpd; then check_zerohttpd; fi
    mkdir -p "$BUILD" "$LOGS"
    step "base image"
    pick_base
    if building server || building loadgen; then
        step "wheelhouse"
        if building server; then fetch_wheels server; fi
        if building loadgen; then fetch_wheels loadgen; fi
    fi
    if building loadgen; then
        step "load-generator binaries (TOOLS: $TOOLS)"
        check_oha
        check_wrk2
    fi
    REVISION="$(revision)"
    step "images (revision $REVISION, base $BASE)"
    local name
    for name in $KNOWN_IMAGES; do
        if building "$name"; then build_image "$name"; fi
    done
    # Each build with a new revision label leaves the previous image untagged: drop those (ours
    # only, and never one a container still uses). The layer cache stays.
    docker image prune -f --filter "label=org.opencontainers.image.source=zerolab" >/dev/null 2>&1 || true
    step "done in $((SECONDS - STARTED)) s"
}

main "$@"
