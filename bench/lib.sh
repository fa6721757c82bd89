# Shared by the bench scripts (sourced): a generated capture, a warrant file, and one timed run of
# a tool.

# bench_capture NAME MEGABYTES: builds tapir and the generator, makes $work (under BENCH_DIR,
# removed on exit) and writes the generated mix of MEGABYTES there as $cap, read once into the
# page cache so that every tool reads the same warm file.
bench_capture() {
  work=$(mktemp -d "${BENCH_DIR:-/tmp}/tapir-$1.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cargo build --release --quiet --bin tapir --example gen_capture
  cap="$work/bench.pcap"
  ./target/release/examples/gen_capture "$cap" "$2"
  cat "$cap" > /dev/null
}

# bench_warrant FILE LIID TARGET [SCOPE]: a warrant over all time on one target, IRI and CC
# unless SCOPE says otherwise ("iri", "cc").
bench_warrant() {
  printf '[[warrant]]\nliid = "%s"\nstart = "2000-01-01T00:00:00Z"\nend = "2100-01-01T00:00:00Z"\nscope = "%s"\ntargets = ["%s"]\n' \
    "$2" "${4:-iri+cc}" "$3" > "$1"
}

# bench_run NAME COMMAND...: runs the command (output in $work/out.txt) and prints its time,
# packets/s and MB/s over $packets and $bytes, its CPU (user + system over elapsed, 200% = both
# cores of this machine busy) and its peak RSS (GNU time). Stops the script with the command's
# output if it fails.
bench_run() {
  local name=$1; shift
  local t0 t1
  # Flush what the previous tool wrote, so that its writeback does not slow this one.
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M %P' -o "$work/rss" "$@" > "$work/out.txt" 2>&1 || { echo "$name failed:"; cat "$work/out.txt"; return 1; }
  t1=$(date +%s.%N)
  read -r rss cpu < "$work/rss"
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v p="$packets" -v b="$bytes" -v r="$rss" -v c="$cpu" \
    'BEGIN { s = t1 - t0; printf "%-38s %6.2f s %9.0f packets/s %7.1f MB/s %5s CPU %7.1f MB peak RSS\n", n, s, p / s, b / s / 1e6, c, r / 1024 }'
}

# bench_peer NAME SUMMARY COMMAND...: runs the command (10 minutes at most, output in
# $WORK/out.txt) and prints its time, peak RSS and the first words of what SUMMARY (a shell
# command reading that output) says; a failure is printed, not fatal.
bench_peer() {
  local name=$1 summary=$2; shift 2
  sync
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$WORK/rss" timeout 600 "$@" > "$WORK/out.txt" 2> "$WORK/err.txt" || rc=$?
  t1=$(date +%s.%N)
  local said
  said=$(bash -c "$summary" < "$WORK/out.txt" 2>&1 | head -c 200 | tr '\n' ' ') || true
  [[ -s $WORK/out.txt ]] || said="(no output) $(tail -c 160 "$WORK/err.txt" | tr '\n' ' ')"
  [[ $rc -eq 0 ]] || said="exit $rc: $(head -c 120 "$WORK/err.txt" | tr '\n' ' ') $said"
  awk -v n="$name" -v t0="$t0" -v t1="$t1" -v r="$(tail -1 "$WORK/rss")" -v s="$said" \
    'BEGIN { printf "  %-26s %8.2f s %8.1f MB  %s\n", n, t1 - t0, r / 1024, s }'
}
