#!/bin/sh
# Regenerates the TLS fixtures: a self-signed EC certificate with SANs, and two loopback
# handshakes captured in a private network namespace (TLS 1.2 and TLS 1.3) between
# `openssl s_server` and `openssl s_client` with SNI and ALPN set. Run as root from this folder.
set -eu
NS=tapir-tls-$$
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.pem \
  -days 3650 -set_serial 0x1a2b3c4d5e6f -subj "/C=DE/O=Tapir Test/CN=files.example.test" \
  -addext "subjectAltName=DNS:files.example.test,DNS:www.example.test,IP:192.0.2.7" 2>/dev/null
openssl x509 -in server.pem -outform DER -out server.der
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
ip -n "$NS" link set lo up
for v in 1_2 1_3; do
  ip netns exec "$NS" tcpdump -i lo -U -s 0 -w "tls${v}-loopback.pcap" tcp port 4433 2>/dev/null &
  dump=$!
  ip netns exec "$NS" openssl s_server -accept 4433 -cert server.pem -key server.key -tls$v -alpn h2,http/1.1 -naccept 1 -quiet >/dev/null 2>&1 &
  srv=$!
  sleep 1
  echo hello | ip netns exec "$NS" openssl s_client -connect 127.0.0.1:4433 -servername files.example.test \
    -alpn h2,http/1.1 -tls$v -quiet >/dev/null 2>&1 || true
  sleep 1
  kill "$srv" 2>/dev/null || true
  kill "$dump"
  wait "$dump" 2>/dev/null || true
done
rm -f server.key
