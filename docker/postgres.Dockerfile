# PostgreSQL 15 from Debian's packages, initialised from POSTGRES_USER, POSTGRES_PASSWORD and
# POSTGRES_DB as the official postgres image is, so either runs the same compose file and test
# fixtures. `speechstream dev images` builds it (context: the repository).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
COPY docker/postgres/run.sh /usr/local/bin/speechstream-postgres

USER postgres
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:$PATH
VOLUME /var/lib/postgresql/data
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=30 \
    CMD pg_isready -h 127.0.0.1 -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-postgres}"
ENTRYPOINT ["/usr/local/bin/speechstream-postgres"]
