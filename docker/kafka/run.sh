#!/bin/sh
# Start the broker: write server.properties from the KAFKA_* environment (the official
# image's convention), format the data directory once (CLUSTER_ID, or a fixed id), then run
# kafka.Kafka in the foreground. `run.sh health` answers whether the broker's listener
# (KAFKA_HEALTH_PORT, 9092 unless set) accepts connections.
set -eu
HOME_DIR=${KAFKA_HOME:-/opt/kafka}
PROPS=$HOME_DIR/config/server.properties
CP="$HOME_DIR/libs/*"

if [ "${1:-}" = "health" ]; then
    exec bash -c "exec 3<>/dev/tcp/127.0.0.1/${KAFKA_HEALTH_PORT:-9092}"
fi

: > "$PROPS"
env | grep '^KAFKA_' | while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_HEALTH_PORT|KAFKA_HOME) continue ;;
    esac
    key=$(printf '%s' "${name#KAFKA_}" | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' \
        -e 's/@/_/g' | tr 'A-Z' 'a-z')
    printf '%s=%s\n' "$key" "$value" >> "$PROPS"
done

data_dir=$(sed -n 's/^log\.dirs=//p' "$PROPS" | cut -d, -f1)
if [ ! -f "$data_dir/meta.properties" ]; then
    java -Xmx256m -cp "$CP" -Dlog4j2.configurationFile="$HOME_DIR/log4j2.yaml" \
        kafka.tools.StorageTool format -t "${CLUSTER_ID:-T6cmHIQlR_eWcdSevKc7hQ}" -c "$PROPS"
fi
# shellcheck disable=SC2086  # the heap options are several words
exec java ${KAFKA_HEAP_OPTS} ${KAFKA_OPTS:-} -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HOME_DIR/log4j2.yaml" -cp "$CP" kafka.Kafka "$PROPS"
