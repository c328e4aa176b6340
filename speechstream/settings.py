"""The floor's typed settings: the broker, the database, the base of every service's settings
(``ServiceSettings``), the scoring engine's and the dev stack's.

Each service's own settings class lives beside its stage (``streams/settings.py``,
``consumers/settings.py``, ``sinks/settings.py``, ``api/settings.py``; the operator's key file in
``producers/settings.py``); settings modules are the only readers of the environment. Settings
are read once, at the edge (the ``speechstream`` command, the demo, a benchmark), and passed
down: services and the scoring engine take them as arguments.

``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` point every command and service at a broker
and a database; when unset they default to the local stack that ``speechstream dev up`` runs.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import TopicRegistry

GIB = 1024**3
DEV_KAFKA_PORT = 39092
DEV_POSTGRES_PORT = 55432
DEV_PROMETHEUS_PORT = 39090
DEV_BOOTSTRAP = f"127.0.0.1:{DEV_KAFKA_PORT}"
DEV_DATABASE_URL = f"postgresql://speechstream@127.0.0.1:{DEV_POSTGRES_PORT}/speechstream"


class KafkaSettings(BaseSettings):
    """Where the broker is and which topic prefix this deployment uses."""

    model_config = SettingsConfigDict(extra="ignore")

    bootstrap_servers: str = Field(DEV_BOOTSTRAP, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    topic_prefix: str = Field("speechstream.", validation_alias="SPEECHSTREAM_TOPIC_PREFIX")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias="KAFKA_SASL_MECHANISM"
    )
    sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME")
    sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")
    ssl_ca_location: Path | None = Field(None, validation_alias="KAFKA_SSL_CA_LOCATION")
    ssl_certificate_location: Path | None = Field(
        None, validation_alias="KAFKA_SSL_CERTIFICATE_LOCATION"
    )
    ssl_key_location: Path | None = Field(None, validation_alias="KAFKA_SSL_KEY_LOCATION")
    ssl_key_password: SecretStr | None = Field(None, validation_alias="KAFKA_SSL_KEY_PASSWORD")

    @property
    def topics(self) -> TopicRegistry:
        """Topic names under this deployment's prefix."""
        return TopicRegistry(self.topic_prefix)

    def to_librdkafka(self, **extra: Any) -> dict[str, Any]:
        """The confluent-kafka (librdkafka) configuration, plus ``extra``."""
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": f"speechstream-{socket.gethostname()}",
        }
        if self.sasl_mechanism:
            cfg["sasl.mechanism"] = self.sasl_mechanism
            cfg["sasl.username"] = self.sasl_username or ""
            cfg["sasl.password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        for key, value in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if value is not None:
                cfg[key] = str(value)
        if self.ssl_key_password is not None:
            cfg["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        cfg.update(extra)
        return cfg

    @property
    def uses_tls(self) -> bool:
        """Whether connections to the brokers are encrypted (SSL or SASL_SSL)."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the clients that take one (Faust's), from the same settings."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_ca_location) if self.ssl_ca_location else None
        )
        if self.ssl_certificate_location is not None:
            context.load_cert_chain(
                str(self.ssl_certificate_location),
                str(self.ssl_key_location) if self.ssl_key_location else None,
                self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
            )
        return context

    def producer_config(self, **extra: Any) -> dict[str, Any]:
        """``to_librdkafka`` for a producer: with the Java client's (and aiokafka's) murmur2
        partitioner, so a key lands on the same partition whoever produces it and the Faust
        tables joined by key stay co-partitioned."""
        return self.to_librdkafka(**{"partitioner": "murmur2_random", **extra})

    def faust_broker_url(self) -> str:
        """The broker URL in Faust's form (``kafka://host:port;host:port``)."""
        hosts = [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]
        return ";".join(f"kafka://{h}" for h in hosts)


class AclSettings(BaseSettings):
    """``speechstream acl plan | apply``: which principals hold each role
    (``SPEECHSTREAM_ACL_PRINCIPALS_FILE``, a JSON object role → principals; without it, one
    principal a role, ``User:<role>``); ``speechstream credentials add``: a miner's produce
    quota."""

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_ACL_", extra="ignore")

    principals_file: Path | None = None
    miner_producer_byte_rate: int = Field(
        16 * 1024, gt=0, description="The produce quota `speechstream credentials add` gives "
        "a miner, in bytes a second (a registration or a submission is under 1 KiB).",
    )


class DatabaseSettings(BaseSettings):
    """Where PostgreSQL is."""

    model_config = SettingsConfigDict(extra="ignore")

    url: SecretStr = Field(SecretStr(DEV_DATABASE_URL), validation_alias="DATABASE_URL")

    @property
    def conninfo(self) -> str:
        """The libpq connection string."""
        return self.url.get_secret_value()


class ServiceSettings(BaseSettings):
    """What every long-running service's settings have (a service's own class, beside its
    stage, adds the rest and its ``SPEECHSTREAM_<SERVICE>_`` prefix)."""

    model_config = SettingsConfigDict(extra="ignore")

    metrics_port: int | None = Field(None, description="Serve /metrics and /health here.")
    progress_window_s: float = Field(
        900.0, ge=10.0, description="A consuming service whose lag has grown over this long "
        "while it committed nothing is not making progress: /health answers 503 (status "
        "`not progressing`). An evaluator's must exceed its longest evaluation.",
    )
    key_file: Path | None = Field(
        None, description="This service's signing key (`speechstream trust keygen`): every "
        "event it writes is signed with it; the operator's trusted set must name its public "
        "key for the service's role (`speechstream trust add`).",
    )


class TrustSettings(BaseSettings):
    """The root of trust every reader checks events against (``speechstream.trust``): the
    operator's public key (``SPEECHSTREAM_TRUST_OPERATOR_KEY``, printed by
    ``speechstream trust init``). Without it a service refuses to start, unless
    ``SPEECHSTREAM_TRUST_INSECURE=true`` says to believe every event on the log (a development
    log, or tests of something else)."""

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_TRUST_", extra="ignore")

    operator_key: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    insecure: bool = False
    refresh_s: float = Field(
        30.0, gt=0, description="How often a reader looks for a newer trusted set (a revoked "
        "key stops counting within this time); a key it does not know yet makes it look at "
        "once (at most once a second).",
    )


class DevSettings(BaseSettings):
    """The local development stack that ``speechstream dev up`` runs (Kafka + PostgreSQL).

    ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``, when set, name an existing broker / database
    that the stack uses instead of starting its own.
    """

    model_config = SettingsConfigDict(
        env_prefix="SPEECHSTREAM_DEV_", extra="ignore", populate_by_name=True
    )

    cache_dir: Path = Field(default_factory=lambda: Path("~/.cache/speechstream").expanduser())
    state_dir: Path = Path(".speechstream/dev")
    kafka_port: int = DEV_KAFKA_PORT
    kafka_controller_port: int = DEV_KAFKA_PORT + 1
    kafka_heap: str = "1g"
    kafka_sasl: bool = Field(
        False, description="Run the local broker with SASL/SCRAM-SHA-512 over TLS (SASL_SSL, "
        "a local CA in <state_dir>/kafka-sasl/tls) and ACLs (StandardAuthorizer, deny what "
        "no ACL allows): a super user `admin` and one SCRAM user a role, their passwords in "
        "<state_dir>/kafka-sasl/credentials.json. Off: PLAINTEXT, no authorization (the "
        "default).",
    )
    postgres_port: int = DEV_POSTGRES_PORT
    postgres_bin_dir: Path | None = None
    prometheus: bool = Field(
        False, description="Also run Debian's Prometheus (installed when missing), scraping "
        "the services named in <state_dir>/prometheus/targets/*.json (`speechstream demo` "
        "writes its run's there) and evaluating docker/prometheus/rules.yml.",
    )
    prometheus_port: int = DEV_PROMETHEUS_PORT
    start_timeout_s: float = 90.0
    external_bootstrap_servers: str | None = Field(
        None, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    external_database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")


PARLER_SETUP = "bash scripts/setup-parler.sh"


class ScoringSettings(BaseSettings):
    """How the scoring engine fetches, scores and bounds submissions.

    Every field reads ``SPEECHSTREAM_SCORING_<FIELD>``, e.g. ``SPEECHSTREAM_SCORING_MODELS_ROOT``.
    """

    model_config = SettingsConfigDict(env_prefix="SPEECHSTREAM_SCORING_", extra="ignore")

    models_root: Path | None = Field(
        None, description="Local repos as <root>/<namespace>/<name>; when set, the hub is not used."
    )
    hf_token: SecretStr | None = None
    hf_endpoint: str | None = None
    cache_dir: Path | None = Field(
        None, description="Where hub snapshots land (evicted); default "
        "~/.cache/speechstream/models.",
    )
    cache_budget_bytes: int = Field(
        4 * 18 * GIB, ge=0, description="Disk budget of the snapshot cache (`speechstream "
        "maintenance --apply` evicts the least recently used snapshots past it).",
    )
    max_weight_bytes: int = 18 * GIB

    n_samples: int = Field(40, ge=1)
    batch_size: int | None = Field(None, ge=1, description="Fixed batch size; None sizes batches.")
    max_batch_size: int = Field(32, ge=1)
    time_limit_s: float = Field(1800.0, gt=0)
    memory_limit_bytes: int | None = Field(
        None, description="Address-space cap of the isolated evaluation process (CPU only)."
    )
    max_audio_s: float = Field(8.0, gt=0, description="Longest clip generated per sample.")
    max_text_tokens: int = 100
    keep_audio: bool = Field(
        True, description="Encode each sample's generated clip and its reference (Opus and "
        "MP3) and publish them beside the score, for the leaderboard's pages.",
    )
    ce_k: float = 1.0
    deterministic: bool = Field(
        True, description="Run torch with deterministic algorithms (bit-identical on CPU)."
    )

    reference_voice: Literal["offline", "http"] = "offline"
    reference_url: str | None = None
    reference_api_key: SecretStr | None = None
    reference_timeout_s: float = 60.0
    reference_cache_dir: Path | None = Field(
        None, description="Where reference audio is kept (`scoring/refcache.py`), shared by "
        "the evaluators of a machine; default ~/.cache/speechstream/references.",
    )
    reference_cache_budget_bytes: int = Field(
        GIB, ge=0, description="Disk budget of the reference cache (least recently used "
        "entries go first); 0 turns the cache off.",
    )

    asr: Literal["pocketsphinx", "whisper", "http"] = "pocketsphinx"
    asr_url: str | None = None
    asr_model_path: Path | None = Field(None, description="Local Whisper weights directory.")
    asr_timeout_s: float = 60.0
    asr_batch_size: int = Field(
        16, ge=1, description="Clips a transcriber that can batch (Whisper) decodes at once.",
    )

    human_likeness_weights: Path | None = Field(
        None, description="Local weights of the human-likeness method; the method is off without."
    )
    human_likeness_weight: float = 0.0

    parler_python: Path = Field(
        Path(".venv-parler/bin/python"),
        description="Interpreter of the Parler environment (a relative path is taken from the "
        f"working directory; `{PARLER_SETUP}` creates the default one).",
    )
    warm: bool = Field(
        True, description="Start the next evaluation process (interpreter, torch, the model "
        "code, the ASR and the reference voice loaded; the CUDA context on a GPU) while the "
        "current evaluation runs, so that the next request finds it ready. Each evaluation "
        "still has a process of its own.",
    )
    warm_max_idle_s: float = Field(
        900.0, gt=0, description="A warm evaluation process that waited longer than this is "
        "replaced by a fresh one before it is given an evaluation.",
    )

    @property
    def reference_cache_path(self) -> Path:
        """The reference cache's directory: ``reference_cache_dir``, else
        ``~/.cache/speechstream/references``. Never under ``cache_dir``: every entry there is
        taken for a model snapshot, which maintenance evicts whole."""
        return self.reference_cache_dir or Path.home() / ".cache" / "speechstream" / "references"

    @property
    def models_cache_dir(self) -> Path:
        """Where hub snapshots land: ``cache_dir``, else ``~/.cache/speechstream/models``."""
        return self.cache_dir or Path.home() / ".cache" / "speechstream" / "models"

    def interpreter(self, environment: str) -> Path | None:
        """The Python interpreter of an evaluator environment, or None where it is not set up."""
        if environment != "parler":
            return None
        return self.parler_python if self.parler_python.exists() else None

    def child_payload(self) -> dict[str, Any]:
        """These settings as JSON for an evaluation child process, secrets included."""
        data = self.model_dump(mode="json")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                data[name] = value.get_secret_value()
        return data
