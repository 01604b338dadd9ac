#!/usr/bin/env bash
# Runs one command inside a throwaway QEMU virtual machine that boots the
# distribution's stock kernel (which has ipvlan) on this machine's own root
# file system, shared read-only over 9p under a tmpfs overlay. Binaries built on
# the host run unchanged inside. Boots in ~6 s under software emulation.
#
#   ci/vm/run.sh [OPTIONS] -- COMMAND [ARGS...]   run COMMAND in the VM, exit with its status
#   ci/vm/run.sh setup [--kernel K --modules M]    fetch/cache everything, boot nothing
#
# Options:
#   --kernel PATH    kernel to boot: an uncompressed vmlinux (ELF) or a bzImage.
#                    Default: the distribution's current kernel package
#                    (Debian's linux-image-amd64, Ubuntu's linux-image-generic),
#                    downloaded (not installed) and cached.
#   --modules DIR    that kernel's modules: either DIR/lib/modules/VERSION exists
#                    (as `make modules_install INSTALL_MOD_PATH=DIR` leaves it) or
#                    DIR is /lib/modules/VERSION itself. Required with --kernel.
#   --timeout SECS   kill the VM after SECS (default 1800); exit 124 and say so
#   --out DIR        copy what COMMAND wrote to $IBVM_OUT into DIR
#   --env NAME=VALUE pass a variable into the VM (repeatable; CI, RUST_BACKTRACE,
#                    RUST_LOG, HARNESS_* and IPVLAN_BGP_* pass through anyway)
#   --mem MB         guest memory (default 3072)      --cpus N   guest CPUs (default 2)
#   --deny-module M  the guest refuses to load kernel module M (repeatable): its
#                    init installs `install M /bin/false` in modprobe.d before
#                    anything runs, so the booted kernel never has it (e.g.
#                    ipvlan: how a kernel without ipvlan is handled, on a host
#                    whose kernel has it)
#
# Environment: IBVM_CACHE (cache folder, default /var/cache/ipvlan-bgp-vm),
# IBVM_ACCEL (auto | kvm | tcg; default auto: KVM when a short boot under it
# works, else TCG), IBVM_QEMU (a qemu-system-x86_64 to use).
#
# Inside the VM, COMMAND runs as root from the current directory with no tty
# (the host's files are all there, under an overlay whose writes are thrown
# away, except /run, which is the guest's own);
# IBVM_ACCEL says kvm or tcg, and HARNESS_TIME_SCALE defaults to 10 under TCG
# (2 under KVM). Exit status: COMMAND's; 124 on timeout (VM killed); 125 when
# the VM could not be prepared or did not boot. Nothing is left behind: the VM
# process is killed by pid and the job folder removed, also on Ctrl-C.
set -euo pipefail

readonly RC_TIMEOUT=124 RC_NOVM=125
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IBVM_CACHE:-/var/cache/ipvlan-bgp-vm}

say() { echo "ci/vm: $*" >&2; }
die() {
    say "$*"
    exit $RC_NOVM
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- arguments
mode=run
if [ "${1:-}" = setup ]; then
    mode=setup
    shift
fi
kernel_arg= modules_arg= timeout=1800 out= mem=3072 cpus=2
envs=()
deny=()
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) kernel_arg=$2; shift 2 ;;
        --modules) modules_arg=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --env) envs+=("$2"); shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --cpus) cpus=$2; shift 2 ;;
        --deny-module)
            [[ $2 =~ ^[A-Za-z0-9_-]+$ ]] || die "--deny-module takes a module name"
            deny+=("$2"); shift 2 ;;
        --) shift; break ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see ci/vm/run.sh --help)" ;;
    esac
done
if [ "$mode" = run ] && [ $# -eq 0 ]; then
    die "no command given: ci/vm/run.sh [OPTIONS] -- COMMAND [ARGS...]"
fi
if [ -n "$kernel_arg" ] && [ -z "$modules_arg" ]; then
    die "--kernel needs --modules (the folder with that kernel's lib/modules/VERSION)"
fi
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout takes whole seconds"

mkdir -p "$cache" || die "cannot create the cache folder $cache (run as root, or set IBVM_CACHE)"
# One preparer at a time; the boots themselves run in parallel.
exec 9>"$cache/.lock"
flock 9

# ------------------------------------------------------------------ qemu
# An installed qemu-system-x86_64 first. Else Debian's package, unless
# installing it would remove something (on this kind of machine it would
# remove the newer qemu-utils): then unpack it into the cache and install only
# the libraries it links against.
qemu_opts=()
find_qemu() {
    if [ -n "${IBVM_QEMU:-}" ]; then
        qemu=$IBVM_QEMU
        return
    fi
    if qemu=$(command -v qemu-system-x86_64); then
        return
    fi
    local d=$cache/qemu
    if [ ! -x "$d/usr/bin/qemu-system-x86_64" ]; then
        command -v apt-get >/dev/null || die "no qemu-system-x86_64 and no apt-get to fetch it"
        local sim
        sim=$(apt-get install -s --no-install-recommends qemu-system-x86 2>&1) ||
            { apt-get update -qq >/dev/null 2>&1 || true; sim=$(apt-get install -s --no-install-recommends qemu-system-x86 2>&1) || die "apt cannot install qemu-system-x86: $sim"; }
        if ! grep -q '^Remv ' <<<"$sim"; then
            say "installing qemu-system-x86"
            DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null ||
                die "apt-get install qemu-system-x86 failed"
            qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86 installed but no qemu-system-x86_64"
            return
        fi
        say "installing qemu-system-x86 would remove $(grep '^Remv ' <<<"$sim" | cut -d' ' -f2 | tr '\n' ' ')- unpacking it into $d instead"
        local tmp
        tmp=$(mktemp -d "$cache/tmp.qemu.XXXXXX")
        (cd "$tmp" && apt-get download qemu-system-x86 qemu-system-common qemu-system-data seabios) >/dev/null 2>&1 ||
            { rm -rf "$tmp"; die "apt-get download qemu-system-x86 failed"; }
        mkdir "$tmp/root"
        for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
        rm -rf "$d"
        mv "$tmp/root" "$d"
        rm -rf "$tmp"
    fi
    local missing=()
    local p
    for p in $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances qemu-system-x86 |
        awk '/^ *\|?Depends:/ { print $2 }' | grep -v -E '^(qemu-|seabios|ipxe-qemu)' | sort -u); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing the libraries qemu needs: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
            die "apt-get install ${missing[*]} failed"
    fi
    qemu=$d/usr/bin/qemu-system-x86_64
    qemu_opts=(-L "$d/usr/share/qemu" -L "$d/usr/share/seabios")
    if ldd "$qemu" | grep 'not found' >/dev/null; then
        die "$qemu lacks libraries: $(ldd "$qemu" | grep 'not found' | tr -s ' \n' ' ')"
    fi
}

# ---------------------------------------------------------------- kernel
# Extracts the ELF vmlinux from an xz-compressed bzImage: booting it saves
# the 4-5 s the guest would spend decompressing itself under emulation.
extract_vmlinux() {
    local img=$1 dest=$2 off
    off=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$img" | head -1 | cut -d: -f1) || true
    [ -n "$off" ] || return 1
    tail -c +$((off + 1)) "$img" | xz -dc --single-stream >"$dest.tmp" 2>/dev/null || true
    if [ "$(head -c 4 "$dest.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
        mv "$dest.tmp" "$dest"
    else
        rm -f "$dest.tmp"
        return 1
    fi
}

# The distribution's current kernel: the package linux-image-amd64 (Debian)
# or linux-image-generic (Ubuntu) points to, with its modules packages where
# they are separate (Ubuntu), fetched with apt-get download (never
# installed), unpacked, depmod'ed, cached.
distro_kernel() {
    local pkg= meta
    lookup() {
        for meta in linux-image-amd64 linux-image-generic; do
            apt-cache depends "$meta" 2>/dev/null |
                awk '/Depends: linux-image-/ { print $2; found = 1; exit } END { exit !found }' && return
        done
        return 0
    }
    pkg=$(lookup)
    if [ -z "$pkg" ]; then
        apt-get update -qq >/dev/null 2>&1 || true
        pkg=$(lookup)
    fi
    if [ -z "$pkg" ]; then
        local last
        last=$(ls -1 "$cache/kernels" 2>/dev/null | sort -V | tail -1)
        [ -n "$last" ] || die "cannot find the distribution's kernel package (apt-cache depends linux-image-amd64 / linux-image-generic found nothing)"
        say "apt names no kernel package; using the cached $last"
        pkg=linux-image-$last
    fi
    modver=${pkg#linux-image-}
    modver=${modver#unsigned-}
    local dir=$cache/kernels/$modver
    if [ ! -f "$dir/.complete" ]; then
        local t0 tmp pkgs=("$pkg") extra
        t0=$(now)
        for extra in "linux-modules-$modver" "linux-modules-extra-$modver"; do
            apt-cache show "$extra" >/dev/null 2>&1 && pkgs+=("$extra")
        done
        say "fetching ${pkgs[*]} (download and unpack, not install)"
        mkdir -p "$cache/kernels"
        tmp=$(mktemp -d "$cache/tmp.kernel.XXXXXX")
        (cd "$tmp" && apt-get download "${pkgs[@]}") >/dev/null 2>&1 ||
            { rm -rf "$tmp"; die "apt-get download ${pkgs[*]} failed"; }
        mkdir "$tmp/root"
        local deb
        for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
        depmod -b "$tmp/root" "$modver" || { rm -rf "$tmp"; die "depmod for $modver failed"; }
        extract_vmlinux "$tmp/root/boot/vmlinuz-$modver" "$tmp/root/boot/vmlinux-$modver" ||
            say "no xz payload in vmlinuz-$modver: booting the compressed image"
        rm -rf "$dir"
        mv "$tmp/root" "$dir"
        rm -rf "$tmp"
        touch "$dir/.complete"
        # Older kernels are dead weight (~400 MB each).
        local k
        for k in "$cache/kernels"/*; do
            [ "$k" = "$dir" ] || rm -rf "$k" "$cache/initrd/initrd-$(basename "$k")-"*
        done
        say "kernel $modver cached in $dir ($(since "$t0") s)"
    fi
    if [ -f "$dir/boot/vmlinux-$modver" ]; then
        kernel=$dir/boot/vmlinux-$modver
    else
        kernel=$dir/boot/vmlinuz-$modver
    fi
    modroot=$dir
}

# A kernel of the user's: boot it as given (or its extracted vmlinux).
custom_kernel() {
    [ -f "$kernel_arg" ] || die "--kernel $kernel_arg: no such file"
    local m=${modules_arg%/}
    [ -d "$m" ] || die "--modules $modules_arg: no such folder"
    m=$(cd "$m" && pwd)
    if [ "$(basename "$(dirname "$m")")" = modules ] && [ "$(basename "$(dirname "$(dirname "$m")")")" = lib ]; then
        modver=$(basename "$m")
        modroot=$(dirname "$(dirname "$(dirname "$m")")")
    else
        local vers
        vers=$(ls -1 "$m/lib/modules" 2>/dev/null || true)
        [ "$(wc -w <<<"$vers")" = 1 ] ||
            die "--modules $modules_arg: expected exactly one DIR/lib/modules/VERSION, found: ${vers:-none}"
        modver=$vers
        modroot=$m
    fi
    [ -n "$modroot" ] || modroot=/
    if [ ! -f "$modroot/lib/modules/$modver/modules.dep" ]; then
        depmod -b "$modroot" "$modver" || die "depmod -b $modroot $modver failed"
    fi
    kernel=$(cd "$(dirname "$kernel_arg")" && pwd)/$(basename "$kernel_arg")
    if [ "$(head -c 4 "$kernel" | od -An -tx1 | tr -d ' \n')" != 7f454c46 ]; then
        local sum
        sum=$(sha256sum "$kernel" | cut -c1-16)
        mkdir -p "$cache/custom"
        if [ -f "$cache/custom/vmlinux-$sum" ] || extract_vmlinux "$kernel" "$cache/custom/vmlinux-$sum"; then
            kernel=$cache/custom/vmlinux-$sum
        fi
    fi
}

# ---------------------------------------------------------------- initramfs
# Static busybox, stage 1 and 2, and the modules needed to mount the root
# over 9p (with their dependencies, in load order); the rest autoload in the
# guest from the host's tree.
build_initrd() {
    local bb
    bb=$(command -v busybox) || die "busybox is not installed (apt-get install busybox-static)"
    if ldd "$bb" >/dev/null 2>&1; then
        die "$bb is dynamically linked; the initramfs needs busybox-static"
    fi
    local key
    key=$(cat "$here/init" "$here/stage2" "$bb" <(echo "$modroot $modver") | sha256sum | cut -c1-16)
    initrd=$cache/initrd/initrd-$modver-$key.cpio.gz
    [ -f "$initrd" ] && return
    mkdir -p "$cache/initrd"
    rm -f "$cache/initrd/initrd-$modver-"*
    local tmp
    tmp=$(mktemp -d "$cache/tmp.initrd.XXXXXX")
    mkdir -p "$tmp/bin" "$tmp/modules"
    cp "$bb" "$tmp/bin/busybox"
    install -m 0755 "$here/init" "$tmp/init"
    cp "$here/stage2" "$tmp/stage2"
    : >"$tmp/modules.order"
    local m line path name deps
    for m in virtio_pci 9pnet_virtio 9p overlay; do
        deps=$(modprobe -d "$modroot" -S "$modver" --show-depends "$m" 2>&1) ||
            die "kernel $modver has no module $m (and does not build it in): $deps"
        while read -r line; do
            case "$line" in
                insmod\ *) ;;
                *) continue ;;
            esac
            path=$(echo "$line" | awk '{ print $2 }')
            name=$(basename "$path")
            name=${name%.xz}
            name=${name%.zst}
            name=${name%.gz}
            grep -qx "$name" "$tmp/modules.order" && continue
            case "$path" in
                *.xz) xz -dc "$path" >"$tmp/modules/$name" ;;
                *.zst)
                    command -v zstd >/dev/null ||
                        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zstd >/dev/null 2>&1 ||
                        die "modules are zstd-compressed: install zstd"
                    zstd -qdc "$path" >"$tmp/modules/$name"
                    ;;
                *.gz) gzip -dc "$path" >"$tmp/modules/$name" ;;
                *) cp "$path" "$tmp/modules/$name" ;;
            esac || die "cannot unpack $path"
            echo "$name" >>"$tmp/modules.order"
        done <<<"$deps"
    done
    (cd "$tmp" && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1 >"$initrd.tmp") ||
        die "cannot pack the initramfs"
    mv "$initrd.tmp" "$initrd"
    rm -rf "$tmp"
}

t_prep=$(now)
find_qemu
if [ -n "$kernel_arg" ]; then custom_kernel; else distro_kernel; fi
build_initrd
flock -u 9
exec 9>&-
if [ "$mode" = setup ]; then
    say "ready: kernel $modver ($kernel), qemu $qemu, initramfs $initrd ($(since "$t_prep") s)"
    exit 0
fi

# ---------------------------------------------------------------- the job
job=$(mktemp -d "${TMPDIR:-/tmp}/ibvm-$$-XXXXXX")
qpid=
outfd=
outpid=
alive() {
    local st
    st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$st" != Z ]
}
stop_vm() {
    if [ -n "$qpid" ] && alive "$qpid"; then
        kill -TERM "$qpid" 2>/dev/null || true
        for _ in $(seq 20); do alive "$qpid" || break; sleep 0.1; done
        alive "$qpid" && kill -KILL "$qpid" 2>/dev/null
    fi
    [ -n "$qpid" ] && wait "$qpid" 2>/dev/null
    qpid=
    return 0
}
finish() {
    stop_vm
    if [ -n "$outfd" ]; then
        exec {outfd}>&-
        outfd=
        [ -n "$outpid" ] && wait "$outpid" 2>/dev/null
    fi
    rm -rf "$job"
}
trap finish EXIT
trap 'say "interrupted: stopping the VM"; exit 130' INT TERM HUP

accel_mode=${IBVM_ACCEL:-auto}
case "$accel_mode" in
    kvm) accels=(kvm) ;;
    tcg) accels=(tcg) ;;
    auto)
        if [ -d /sys/module/kvm_pvm ]; then
            say "KVM here is PVM-only (kvm_pvm loaded: stock kernels hang under it): using TCG"
            accels=(tcg)
        elif [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
            accels=(kvm tcg)
        else
            accels=(tcg)
        fi
        ;;
    *) die "IBVM_ACCEL=$accel_mode: use auto, kvm or tcg" ;;
esac

pass=()
while IFS='=' read -r name _; do
    case "$name" in
        CI | RUST_BACKTRACE | RUST_LOG | HARNESS_* | IPVLAN_BGP_*) pass+=("$name=${!name}") ;;
    esac
done < <(env)
pass+=("${envs[@]}")

write_cmd() {
    local accel=$1 e have_scale=
    shift
    {
        echo "# written by ci/vm/run.sh"
        printf 'cd %q || exit 125\n' "$PWD"
        for e in "${pass[@]}"; do
            printf 'export %q\n' "$e"
            [[ $e == HARNESS_TIME_SCALE=* ]] && have_scale=1
        done
        if [ -z "$have_scale" ]; then
            if [ "$accel" = tcg ]; then echo "export HARNESS_TIME_SCALE=10"; else echo "export HARNESS_TIME_SCALE=2"; fi
        fi
        printf 'export IBVM_ACCEL=%q IBVM_OUT=/run/ibvm/job/out\n' "$accel"
        printf 'exec'
        printf ' %q' "$@"
        echo
    } >"$job/cmd"
}

exec {outfd}> >(tr -d '\r')
outpid=$!
deadline=$(($(date +%s) + timeout))
for accel in "${accels[@]}"; do
    rm -rf "$job/booted" "$job/rc" "$job/out"
    write_cmd "$accel" "$@"
    if [ "$accel" = kvm ]; then cpu=host boot_limit=20; else cpu=max boot_limit=120; fi
    t0=$(now)
    "$qemu" "${qemu_opts[@]}" -M pc -accel "$accel" -cpu "$cpu" -m "$mem" -smp "$cpus" \
        -nodefaults -no-user-config -display none -no-reboot -serial stdio -monitor none \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 quiet loglevel=1 panic=-1 mitigations=off ibvm.modver=$modver ibvm.modpath=$modroot/lib/modules/$modver${deny:+ ibvm.deny=$(IFS=,; echo "${deny[*]}")}" \
        -fsdev local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap \
        -device virtio-9p-pci,fsdev=fs0,mount_tag=hostroot \
        -fsdev "local,id=fs1,path=$job,security_model=none" \
        -device virtio-9p-pci,fsdev=fs1,mount_tag=job \
        </dev/null >&"$outfd" 2>&1 &
    qpid=$!
    booted=
    timed_out=
    while alive "$qpid"; do
        if [ -z "$booted" ] && [ -f "$job/booted" ]; then
            booted=1
            say "booted $modver under $accel in $(since "$t0") s"
        fi
        if [ -z "$booted" ] && [ "$(since "$t0" | cut -d. -f1)" -ge "$boot_limit" ]; then
            say "the VM did not boot under $accel within ${boot_limit} s: killed"
            stop_vm
            break
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            timed_out=1
            say "timeout: the command did not finish within ${timeout} s: VM killed"
            stop_vm
            break
        fi
        sleep 0.2
    done
    qrc=0
    if [ -n "$qpid" ]; then
        wait "$qpid" 2>/dev/null || qrc=$?
        qpid=
    fi
    [ -n "$timed_out" ] && exit $RC_TIMEOUT
    [ -f "$job/booted" ] && break
    [ -n "$booted" ] || [ "$qrc" = 0 ] || say "QEMU under $accel stopped before the guest booted (status $qrc)"
done
[ -f "$job/booted" ] || die "the VM did not boot (tried: ${accels[*]})"
if [ -n "$out" ] && [ -d "$job/out" ]; then
    mkdir -p "$out"
    cp -a "$job/out/." "$out/"
fi
if [ ! -f "$job/rc" ]; then
    die "the VM stopped without the command's exit status (crashed, or killed inside) after $(since "$t0") s"
fi
rc=$(cat "$job/rc")
say "command exited with $rc; VM off after $(since "$t0") s in all"
exit "$rc"
