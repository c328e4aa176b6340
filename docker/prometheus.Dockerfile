# Prometheus from Debian's package with the deployment's scrape configuration and alert rules
# (docker/prometheus/), for the compose stack. `speechstream dev images` builds it.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus \
 && chown prometheus:prometheus /prometheus
COPY docker/prometheus/prometheus.yml docker/prometheus/rules.yml /etc/prometheus/

USER prometheus
VOLUME /prometheus
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=6 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090"]
ENTRYPOINT ["/usr/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", \
            "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"]
