# Apache Kafka 4.1.1 in KRaft mode: Debian's JRE and the release's jars from Maven Central,
# configured from KAFKA_* environment variables as the official apache/kafka image is
# (KAFKA_PROCESS_ROLES → process.roles; "__" → "_", "___" → "-"), so either runs the same
# compose file and test fixtures. `speechstream dev images` builds it: the context is a folder
# holding the jars (libs/, fetched on the host as `speechstream dev up` fetches them), the dev
# stack's log4j2.yaml and docker/kafka/.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --home-dir /var/lib/kafka --create-home kafka \
 && mkdir -p /var/lib/kafka/data /opt/kafka/config \
 && chown -R kafka:kafka /var/lib/kafka /opt/kafka/config
COPY libs/ /opt/kafka/libs/
COPY docker/kafka/run.sh log4j2.yaml /opt/kafka/

USER kafka
ENV KAFKA_LOG_DIRS=/var/lib/kafka/data \
    KAFKA_HEAP_OPTS="-Xmx512m -Xms128m"
VOLUME /var/lib/kafka/data
EXPOSE 9092
HEALTHCHECK --interval=5s --timeout=10s --start-period=20s --retries=30 \
    CMD ["/opt/kafka/run.sh", "health"]
ENTRYPOINT ["/opt/kafka/run.sh"]
