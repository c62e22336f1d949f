#!/bin/sh
# Container entry point: on the first start, writes an example configuration
# to /data and stops so the operator can edit it; on the next start, writes
# the appservice registration for the homeserver and stops again; from then
# on runs the bridge. Paths can be changed with SFB_CONFIG / SFB_REGISTRATION.
set -eu

bin=/usr/local/bin/sfb-matrix-bridge
config="${SFB_CONFIG:-/data/config.yaml}"
registration="${SFB_REGISTRATION:-/data/registration.yaml}"

if [ "$#" -gt 0 ]; then
	# Explicit arguments (-v, -h, a different -c) bypass the first-run steps.
	exec "$bin" "$@"
fi

if [ ! -f "$config" ]; then
	"$bin" -c "$config" -e
	echo "No configuration was found, so an example was written to $config."
	echo "Edit it (at least homeserver.address, homeserver.domain, appservice.address,"
	echo "database and bridge.permissions), then start the container again to"
	echo "generate the appservice registration."
	exit 0
fi

if [ ! -f "$registration" ]; then
	"$bin" -c "$config" -r "$registration" -g
	echo "The appservice registration was written to $registration."
	echo "Add it to the homeserver (Synapse: app_service_config_files in homeserver.yaml),"
	echo "restart the homeserver, then start this container again."
	exit 0
fi

cd "$(dirname "$config")"
exec "$bin" -c "$config" -r "$registration"
