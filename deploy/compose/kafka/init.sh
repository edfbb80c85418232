#!/usr/bin/env bash
# kafka-init (compose.yaml): every SCRAM user and ACL of deploy/kafka/generated/acls.sh,
# through the broker's loopback listener, which only processes sharing the broker's
# network namespace reach (this container: network_mode service:kafka). Idempotent.
set -euo pipefail
export PATH=/opt/kafka/bin:$PATH BOOTSTRAP=127.0.0.1:19092 ADMIN_CONFIG=/tmp/admin.properties
echo "security.protocol=PLAINTEXT" > "$ADMIN_CONFIG"
bash /relais/acls.sh > /dev/null
echo "kafka-init: users and ACLs of deploy/kafka/generated/acls.sh applied"
