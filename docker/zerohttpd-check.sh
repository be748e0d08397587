#!/bin/sh
# Checks, inside the image being built, that each of the article's C servers can run here:
# present, executable, built for this machine, and every C library it links found in the
# version it needs. Prints each problem with what to do, and exits 1 if there is any.
set -u
dir="${1:-/opt/zerohttpd}"
archs="iterative forking preforked threaded prethreaded poll epoll"
problems=0
fail() { echo "zerohttpd: $*" >&2; problems=$((problems + 1)); }

# e_machine of an ELF file (bytes 18-19), e.g. "3e00" for x86-64.
machine() { od -An -tx1 -j18 -N2 "$1" 2>/dev/null | tr -d ' \n'; }
here="$(machine /bin/sh)"

for arch in $archs; do
    bin="$dir/$arch"
    if [ ! -f "$bin" ]; then
        fail "$arch: missing (run 'make all' in the checkout; its plain 'make' builds only iterative)"
        continue
    fi
    if [ "$(head -c 4 "$bin" | od -An -c | tr -d ' \n')" != '177ELF' ]; then
        fail "$arch: not an ELF executable"
        continue
    fi
    if [ "$(machine "$bin")" != "$here" ]; then
        fail "$arch: built for another machine (ELF machine $(machine "$bin"), this image runs $here); build it on this kind of host"
        continue
    fi
    out="$(ldd "$bin" 2>&1)"
    case "$out" in
        *"not a dynamic executable"*) continue ;;  # static: nothing to look up
    esac
    missing="$(printf '%s\n' "$out" | grep 'not found' | sed 's/^[[:space:]]*//' | tr '\n' ';')"
    if [ -n "$missing" ]; then
        fail "$arch cannot run on this image: ${missing%;}"
        unlinked=1
    fi
done
if [ -n "${unlinked:-}" ]; then
    glibc="$(ldd --version 2>/dev/null | head -n 1 | sed 's/.* //')"
    fail "what to do: build the checkout with 'make all' where the C library is no newer than this image's (Debian bookworm, glibc $glibc; a bookworm container will do) and link nothing beyond libc and pthreads, then run make images ZEROHTTPD=... again"
fi
for file in public/index.html templates/guestbook/index.html; do
    [ -f "$dir/$file" ] || fail "$file is missing from the checkout (the servers open it relative to their working directory)"
done
[ "$problems" -eq 0 ] || exit 1
echo "zerohttpd: $archs can run here"
