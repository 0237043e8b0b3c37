#!/usr/bin/env bash
# Makes sure nginx with its stream (TCP) module is installed: Debian's nginx
# and libnginx-mod-stream. Does not start it; scripts/cluster.sh runs its own
# instance with the repo's config.
set -euo pipefail
module=/usr/lib/nginx/modules/ngx_stream_module.so
if command -v nginx >/dev/null 2>&1 && [ -f "$module" ]; then
    exit 0
fi
echo "ensure-nginx: installing nginx and its stream module" >&2
# Keep the package from starting the system nginx on port 80.
policy=/usr/sbin/policy-rc.d
placed=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    placed=1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-stream >/dev/null
[ "$placed" = 1 ] && rm -f "$policy"
[ -f "$module" ] || { echo "ensure-nginx: $module missing after install" >&2; exit 1; }
