#!/bin/sh
# Hearth bootstrap, run by cloud-init (runcmd) or, on Fedora CoreOS, by its own unit after Ignition: put
# hearth-agent in place and start it. hearth-agent does every other step and signals Heat itself; this
# script only signals when the agent cannot run. The server ships it without its comment lines.
set -u
AGENT_URL={{agent_url}}
AGENT_SHA256={{agent_sha256}}
AGENT_PATH={{agent_path}}
VERIFY_CA={{verify_ca}}
# curl, the only program here that goes out, reads the lower-case names.
export http_proxy={{http_proxy}} https_proxy={{https_proxy}} no_proxy={{no_proxy}}

# The handle Heat wrote into the per-node values (compact JSON written by hearth-server; Heat's values
# hold no quotes): `field NAME FILE`.
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$2" 2>/dev/null; }
WAIT_ENDPOINT=$(field endpoint {{node_values}})
WAIT_TOKEN=$(field token {{node_values}})
# The id the agent signals with (hearth_agent::signal::node_signal_id): the instance name Heat wrote,
# else the host name; its first label, in lower case. One node, one entry at Heat.
NODE_ID=$(field instance_name {{node_values}})
[ -n "$NODE_ID" ] || NODE_ID=$(hostname)
NODE_ID=$(printf '%s' "${NODE_ID%%.*}" | tr 'A-Z' 'a-z')

# The OpenStack CA, from the node config: a JSON string whose only escapes are newlines.
OPENSTACK_CA=$(field ca_pem {{node_config}})

tls=""
if [ "$VERIFY_CA" = false ]; then
    tls="--insecure"
elif [ -n "$OPENSTACK_CA" ]; then
    # The OpenStack CA in addition to the system's, wherever this distribution keeps them.
    : >/run/hearth-ca-bundle.pem
    for system in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
        [ -s "$system" ] && cat "$system" >/run/hearth-ca-bundle.pem && break
    done
    printf '%b\n' "$OPENSTACK_CA" >>/run/hearth-ca-bundle.pem
    tls="--cacert /run/hearth-ca-bundle.pem"
fi

fail() {
    echo "hearth-bootstrap: $1" >&2
    if [ -n "$WAIT_ENDPOINT" ]; then
        curl -sS $tls --retry 5 --retry-delay 2 --retry-connrefused --max-time 60 -o /dev/null \
            -X POST -H "X-Auth-Token: $WAIT_TOKEN" -H 'Content-Type: application/json' \
            --data-binary "{\"status\": \"FAILURE\", \"reason\": \"part-000 bootstrap: $1\", \"data\": \"\", \"id\": \"$NODE_ID\"}" \
            "$WAIT_ENDPOINT" || echo "hearth-bootstrap: could not signal Heat either" >&2
    fi
    exit 1
}

if [ -n "$AGENT_PATH" ]; then
    [ -x "$AGENT_PATH" ] || fail "the image has no executable hearth-agent at $AGENT_PATH"
elif ! { [ -x {{agent}} ] && echo "$AGENT_SHA256  {{agent}}" | sha256sum -c --status; }; then
    mkdir -p "$(dirname {{agent}})"
    download={{agent}}.download
    curl -fsSL $tls --retry 10 --retry-delay 3 --retry-connrefused --connect-timeout 10 --max-time 600 \
        -o "$download" "$AGENT_URL" || fail "could not download hearth-agent from $AGENT_URL"
    if ! echo "$AGENT_SHA256  $download" | sha256sum -c --status; then
        got=$(sha256sum "$download" | cut -d' ' -f1)
        rm -f "$download"
        fail "hearth-agent from $AGENT_URL has sha256 $got, expected $AGENT_SHA256"
    fi
    chmod 0755 "$download" && mv -f "$download" {{agent}} || fail "could not install hearth-agent"
fi
# The agent's unit, written here rather than by cloud-init or Ignition so that both formats carry it in
# this one compressed script (the agent's agent-service step keeps it from then on).
unit=/etc/systemd/system/{{unit}}
mkdir -p /etc/systemd/system && cat >"$unit.tmp" <<'HEARTH_UNIT' && mv -f "$unit.tmp" "$unit" || fail "could not write $unit"
{{agent_unit}}HEARTH_UNIT
systemctl daemon-reload && systemctl enable {{unit}} && systemctl start --no-block {{unit}} ||
    fail "could not start {{unit}}"
