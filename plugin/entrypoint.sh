#!/bin/sh
# Entry point of the ipvlan-bgp managed plugin: turns the plugin's settings
# (`docker plugin set ipvlan-bgp KEY=VALUE`, declared in config.json) into
# the driver's flags, starts the embedded gobgpd when GOBGP=embedded, and
# runs the driver in the foreground.
set -eu
# dockerd logs a plugin's stderr as errors: the driver's lines carry their own level.
exec 2>&1

set -- --state-dir /var/lib/ipvlan-bgp --log-level "${LOG_LEVEL:-info}"
[ -n "${PARENT:-}" ] && set -- "$@" --parent "$PARENT"
[ -n "${ASN:-}" ] && set -- "$@" --asn "$ASN"
[ -n "${ROUTER_ID:-}" ] && set -- "$@" --router-id "$ROUTER_ID"
[ -n "${NEXT_HOP:-}" ] && set -- "$@" --next-hop "$NEXT_HOP"
for p in ${PEERS:-}; do set -- "$@" --peer "$p"; done
for p in ${ACCEPT_POOLS:-}; do set -- "$@" --accept-pool "$p"; done
for c in ${COMMUNITIES:-}; do set -- "$@" --community "$c"; done
# The cluster-wide IPAM (--ipam-driver): etcd's files come through the etcd mount.
[ -n "${ETCD_ENDPOINTS:-}" ] && set -- "$@" --etcd-endpoints "$ETCD_ENDPOINTS"
[ -n "${ETCD_CA:-}" ] && set -- "$@" --etcd-ca "$ETCD_CA"
[ -n "${ETCD_CERT:-}" ] && set -- "$@" --etcd-cert "$ETCD_CERT"
[ -n "${ETCD_KEY:-}" ] && set -- "$@" --etcd-key "$ETCD_KEY"
[ -n "${ETCD_USER:-}" ] && set -- "$@" --etcd-user "$ETCD_USER"
[ -n "${ETCD_PASSWORD_FILE:-}" ] && set -- "$@" --etcd-password-file "$ETCD_PASSWORD_FILE"
[ -n "${IPAM_HOST_ID:-}" ] && set -- "$@" --ipam-host-id "$IPAM_HOST_ID"
# shellcheck disable=SC2086 # split on purpose: one flag per word
set -- "$@" ${EXTRA_ARGS:-}

case "${GOBGP:-embedded}" in
embedded)
  if [ -z "${ASN:-}" ]; then
    echo "ipvlan-bgp plugin: GOBGP=embedded needs ASN (docker plugin set ipvlan-bgp ASN=65000 PEERS=...)" >&2
    exit 2
  fi
  # gobgpd runs beside the driver, restarted if it dies; the driver
  # configures it (global, peers) over the socket and again after a restart.
  # Its API socket sits beside the plugin's own, where the host sees it too:
  #   gobgp --target unix:///run/docker/plugins/<plugin id>/gobgpd.sock neighbor
  api=/run/docker/plugins/gobgpd.sock
  rm -f "$api"
  # gobgpd 4.x serves Prometheus metrics on 127.0.0.1:6060 even with
  # --pprof-disable (the host's network namespace here): an empty
  # --metrics-path closes it. 3.x has no such flag and no listener.
  quiet=
  case "$(/usr/bin/gobgpd --version 2>/dev/null)" in
  *"version 4."*) quiet=--metrics-path= ;;
  esac
  (
    while :; do
      /usr/bin/gobgpd --api-hosts "unix://$api" -p --pprof-disable $quiet || true
      echo "ipvlan-bgp plugin: gobgpd exited; restarting in 1 s" >&2
      sleep 1
    done
  ) &
  set -- "$@" --gobgp "unix://$api" --listen-port "${LISTEN_PORT:-0}"
  ;;
*)
  set -- "$@" --gobgp "$GOBGP"
  ;;
esac

exec /usr/bin/ipvlan-bgp "$@"
