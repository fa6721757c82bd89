#!/usr/bin/env bash
# Installs, only where missing, the Debian packages tapir's tests and pcaps/make-fixtures.sh use.
# Safe to run again (idempotent), with no stdin, as root (or through sudo).
#
#   bash .ci/install-deps.sh                  # what the tests need (tshark & co.)
#   bash .ci/install-deps.sh --fixture-tools  # plus what regenerating pcaps/ needs: pyftpdlib;
#                                             # for pcaps/app (make-app-fixtures.sh): swaks,
#                                             # postfix, qemu-utils, wget, openssl, OpenSSH,
#                                             # aiosmtpd, pyOpenSSL
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

FIXTURE_TOOLS=0
for a in "$@"; do
    case $a in
        --fixture-tools) FIXTURE_TOOLS=1 ;;
        *) echo "usage: $0 [--fixture-tools]" >&2; exit 2 ;;
    esac
done

SUDO=
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo" >&2; exit 1; }
    SUDO="sudo -n"
fi

# tshark brings wireshark-common (capinfos, editcap, mergecap); tcpreplay brings tcprewrite
# The content-format tests make disk images and archives with the real tools and compare
# tapir's verdicts with their own output: qemu-utils, fdisk (sfdisk), gdisk (sgdisk),
# genisoimage (and isoinfo), xz-utils, zstd, bzip2, zip, unzip; the ETSI tests check signatures
# with openssl; GNU time measures peak memory in bench/replay.sh and for the tests' memory bounds
# (tests/common: output_and_peak_rss_kib); file (libmagic) tells the tests which stored objects
# are disk images (tests/common: disk_image); the RADIUS tests send accounting
# with radclient (freeradius-utils); the feed tests talk to the feed socket with socat; systemd
# brings systemd-analyze, systemd-sysusers and systemd-tmpfiles for tests/daemon_systemd.rs;
# libpcap-dev (headers and libpcap.so) builds the optional `libpcap` feature
# (tests/capture_libpcap.rs); e2fsprogs (mkfs.ext4 -d, debugfs) and openssh-client (ssh-keygen)
# make and check the VM images of tests/vmi_inspect.rs; dosfstools and mtools (mkfs.vfat, mcopy,
# mdir, mtype), ntfs-3g (mkntfs, ntfscp, ntfsls, ntfscat), lvm2 (pvcreate, vgcreate, lvcreate on a
# loop device, activation off), xfsprogs (mkfs.xfs -p, xfs_db) and btrfs-progs (mkfs.btrfs -r,
# btrfs subvolume, dump-tree) those of tests/vmi_filesystems.rs.
# src/vmi/registry.rs's tests write a registry hive with samba-libs' regf code and read it back
# with hivexget (libhivex-bin): tests/data/registry/README.md. ffmpeg (with libx264 and its
# RTMP client and listener) makes the media sessions of tests/analyze_rtmp.rs and is their oracle
# (framemd5, ffprobe -count_frames); sip-tester (SIPp) places the SIP call of tests/analyze_sip.rs.
# GStreamer's RTSP server (gir1.2-gst-rtsp-server-1.0 through the system python3-gi, with the
# demuxer, parsers and payloaders of plugins-good/-bad) serves the RTSP PLAY session of
# tests/analyze_rtsp.rs. Headless chromium opens the case reports of tests/report_html.rs.
PACKAGES=(tshark tcpdump tcpflow tcpreplay ncat lftp nftables iproute2 iputils-ping ethtool
          file curl gzip python3 python3-pip openssl qemu-utils fdisk gdisk genisoimage xz-utils zstd
          bzip2 zip unzip tar time freeradius-utils socat systemd swaks libpcap-dev
          e2fsprogs openssh-client dosfstools mtools ntfs-3g lvm2 xfsprogs btrfs-progs samba-libs libhivex-bin
          ffmpeg sip-tester python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad postfix chromium)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done

if [[ ${#missing[@]} -gt 0 ]]; then
    echo "install-deps: installing ${missing[*]}"
    # tshark's package asks whether non-root users may capture: answer no, never prompt
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        $SUDO debconf-set-selections
    # postfix (its sendmail/postdrop/postcat make and read the queue file of
    # tests/vmi_filesystems.rs, from a config directory of the test's own): no system setup.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO apt-get update -q </dev/null
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
    echo "install-deps: all of ${PACKAGES[*]} already installed"
fi

# qemu-system-x86_64 saves a VM's RAM into a qcow2 snapshot for tests/vmi_inspect.rs. On
# bookworm with qemu-utils from bookworm-backports (this image's), bookworm's own qemu-system-x86
# (7.2) would replace qemu-utils with 7.2: take both from backports, as one version.
if ! command -v qemu-system-x86_64 >/dev/null; then
    echo "install-deps: installing qemu-system-x86"
    target=()
    if grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then
        if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
            printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
                $SUDO tee /etc/apt/sources.list.d/backports.sources >/dev/null
        fi
        target=(-t bookworm-backports)
    fi
    $SUDO apt-get update -q </dev/null
    $SUDO apt-get install -y -q --no-install-recommends "${target[@]}" qemu-system-x86 qemu-utils </dev/null
fi
qemu-img --version >/dev/null && qemu-system-x86_64 --version >/dev/null

# Python decoders the tests use as independent oracles: xmlschema (X1 XML against the ETSI XSDs,
# shared/tools/x1_validate.py), asn1tools (ETSI BER against the
# shared ASN.1 subset), cryptography (integrity-check signatures) and pyftpdlib (the FTP server of
# the 80 MB upload made at test time by pcaps/tools/make-big-upload.sh), prometheus_client
# (parses the metrics endpoint's text format), xmlschema (X1 responses against the XSD) and
# aiosmtpd (the mail server of the live capture test, tests/live_run.rs).
for m in asn1tools:asn1tools cryptography:cryptography pyftpdlib:pyftpdlib prometheus_client:prometheus-client xmlschema:xmlschema aiosmtpd:aiosmtpd; do
    python3 -c "import ${m%%:*}" 2>/dev/null && continue
    echo "install-deps: installing ${m##*:}"
    python3 -m pip install -q "${m##*:}" </dev/null ||
        python3 -m pip install -q --break-system-packages "${m##*:}" </dev/null
    python3 -c "import ${m%%:*}"
done

if [[ $FIXTURE_TOOLS -eq 1 ]]; then
    # pcaps/make-app-fixtures.sh: swaks (SMTP client; its TLS/AUTH need the perl modules),
    # postfix (BDAT/PIPELINING server, run from its own config dir: no system setup wanted),
    # qemu-utils (qemu-img/qemu-io for the qcow2 upload), wget, openssl
    app=()
    for p in swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl postfix \
             qemu-utils wget openssl openssh-client openssh-server; do
        installed "$p" || app+=("$p")
    done
    if [[ ${#app[@]} -gt 0 ]]; then
        echo "install-deps: installing ${app[*]}"
        echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
        $SUDO apt-get update -q </dev/null
        $SUDO apt-get install -y -q --no-install-recommends "${app[@]}" </dev/null
    fi
    for m in aiosmtpd:aiosmtpd OpenSSL:pyopenssl; do
        python3 -c "import ${m%%:*}" 2>/dev/null && continue
        echo "install-deps: installing ${m##*:}"
        python3 -m pip install -q "${m##*:}" </dev/null ||
            python3 -m pip install -q --break-system-packages "${m##*:}" </dev/null
        python3 -c "import ${m%%:*}"
    done
    if python3 -c 'import pyftpdlib' 2>/dev/null; then
        echo "install-deps: pyftpdlib already importable"
    else
        echo "install-deps: installing pyftpdlib"
        python3 -m pip install -q pyftpdlib </dev/null ||
            python3 -m pip install -q --break-system-packages pyftpdlib </dev/null ||
            $SUDO apt-get install -y -q python3-pyftpdlib </dev/null
        python3 -c 'import pyftpdlib'
    fi
fi
