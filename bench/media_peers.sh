#!/usr/bin/env bash
# Media sessions through tapir and its peers side by side: an RTMP publish (TCP) and an RTSP
# RECORD with its RTP over UDP, of a 720p H.264 + AAC clip, captured between two namespaces
# by the test scripts (tests/media/*.sh), then each capture through:
#   tapir replay        case on disk and case on tmpfs (/dev/shm); packets/s, MB/s, peak RSS
#   tshark              RTP analysis (-z rtp,streams) / TCP conversations (-z conv,tcp)
#   tcpflow             the RTMP connection's two byte streams (what a stream tool rebuilds)
#   gst-launch-1.0      pcapparse ! rtph264depay ! matroskamux, with the SDP's parameter sets
#                       typed in by hand (GStreamer cannot read the RTSP exchange)
#
#   sudo bash bench/media_peers.sh [SECONDS]        (clip length, default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
WORK=$(mktemp -d /tmp/tapir-media-peers.XXXXXX)
SHM=$(mktemp -d /dev/shm/tapir-media-peers.XXXXXX)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$WORK" "$SHM"' EXIT
[[ $(id -u) -eq 0 ]] || { echo "run as root (network namespaces)" >&2; exit 1; }
cargo build --release --quiet --bin tapir
TAPIR=$(pwd)/target/release/tapir

source bench/lib.sh

echo "clip: ${SECS} s 1280x720 25 fps H.264 (libx264 veryfast, ~3 Mb/s) + AAC"
for s in rtmp rtsp; do mkdir -p "$WORK/$s"; done
ffmpeg -hide_banner -nostdin -loglevel error -f lavfi -i "testsrc2=size=1280x720:rate=25" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100" -t "$SECS" -c:v libx264 -preset veryfast \
  -b:v 3M -g 50 -pix_fmt yuv420p -c:a aac -b:a 96k -shortest -y "$WORK/rtmp/src.mp4"
cp "$WORK/rtmp/src.mp4" "$WORK/rtsp/src.mp4"
bash tests/media/rtmp-session.sh "$WORK/rtmp" publish benchkey > /dev/null
bash tests/media/rtsp-session.sh "$WORK/rtsp" udp > /dev/null
printf '[[warrant]]\nliid = "BENCH"\nstart = "2020-01-01T00:00:00Z"\nend = "2100-01-01T00:00:00Z"\nscope = "iri+cc"\ntargets = ["ipv4:198.51.100.7"]\n' > "$WORK/w.toml"

TAPIR_SUM='grep -E "^elapsed|BENCH:" | tr -s " "'
for s in rtmp rtsp; do
  cap=$WORK/$s/cap.pcap
  cp "$cap" "$SHM/$s.pcap"
  echo
  echo "$s: $(capinfos -c -s "$cap" | tail -2 | tr -s ' ' | tr '\n' ' ')"
  rm -rf "$WORK/case-$s" "$SHM/case-$s"
  bench_peer "tapir replay (disk)" "$TAPIR_SUM" "$TAPIR" replay "$cap" --warrants "$WORK/w.toml" --out "$WORK/case-$s"
  bench_peer "tapir replay (tmpfs)" "$TAPIR_SUM" "$TAPIR" replay "$SHM/$s.pcap" --warrants "$WORK/w.toml" --out "$SHM/case-$s"
  if [[ $s == rtsp ]]; then
    bench_peer "tshark -z rtp,streams" 'grep -c 198.51.100.7 | sed "s/$/ RTP streams/"' tshark -r "$cap" -q -z rtp,streams
    # The parameter sets GStreamer must be told: from the ANNOUNCE in the capture.
    sprop=$(grep -aoE 'sprop-parameter-sets=[A-Za-z0-9+/=,]+' "$cap" | head -1 | cut -d= -f2-)
    bench_peer "gst pcapparse→mkv" 'true' gst-launch-1.0 -q -e filesrc location="$cap" ! pcapparse dst-port=5000 ! \
      "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,sprop-parameter-sets=(string)\"$sprop\"" ! \
      rtph264depay ! h264parse ! matroskamux ! filesink location="$WORK/gst.mkv"
    echo "    gst file: $(ffprobe -v error -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$WORK/gst.mkv" 2>&1 | head -1) frames"
  else
    bench_peer "tshark -z conv,tcp" 'grep -c "<->" | sed "s/$/ conversations/"' tshark -r "$cap" -q -z conv,tcp
    bench_peer "tcpflow" 'true' tcpflow -r "$cap" -o "$WORK/tcpflow-$s"
    client=$(ls -S "$WORK"/tcpflow-"$s"/*01935 | head -1)
    echo "    tcpflow: $(ls "$WORK/tcpflow-$s" | grep -vc report) stream files; ffprobe on the client's: $(ffprobe -v error "$client" 2>&1 | sed 's/.*: //' | head -1)"
  fi
  src_frames=$(ffprobe -v error -count_frames -select_streams v -show_entries stream=nb_read_frames -of csv=p=0 "$WORK/$s/src.mp4")
  for o in $(python3 -c "import json,sys
for l in open('$WORK/case-$s/BENCH/objects.jsonl'):
    o = json.loads(l)
    if o['name'] and o['name'].endswith(('.flv', '.mkv')): print(o['sha256'])"); do
    echo "    tapir file: $(ffprobe -v error -count_frames -select_streams v -show_entries stream=codec_name,nb_read_frames -of csv=p=0 "$WORK/case-$s/BENCH/objects/$o") frames (source: $src_frames)"
  done
done
