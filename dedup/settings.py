"""One typed settings object, read from a YAML file and the environment, validated once.

Precedence, highest first: explicit overrides (CLI flags), environment variables
(``DEDUP_`` prefix, ``__`` between levels: ``DEDUP_SPARK__MASTER=spark://host:7077``),
the YAML file (``--config`` or ``DEDUP_CONFIG``), then the defaults below.

    >>> s = load_settings(overrides={"lake": "/tmp/lake"})
    >>> s.spark.master
    'local[*]'

A job writes the settings it ran with next to its outputs (``Settings.to_json``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dedup.contracts.locations import is_uri
from dedup.errors import ConfigError
from dedup.s3_settings import S3Settings

CONFIG_ENV = "DEDUP_CONFIG"


def default_cache_dir() -> Path:
    """Where fetched artefacts (Delta jars, test portraits) are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dedup"


def _absolute_path(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser()))


def _absolute_unless_uri(location: str) -> str:
    return location if is_uri(location) else str(_absolute_path(Path(location)))


def _utc(instant: dt.datetime) -> dt.datetime:
    """An instant in UTC; one written without an offset is taken as UTC, like captured_at."""
    zoned = instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)
    return zoned.astimezone(dt.UTC)


# Paths are made absolute where the settings are validated, against the working directory of
# that moment: engines resolve a relative path against their own idea of it (Spark reads
# ``lake/enrollments`` as a table name), and every run records where it really wrote.
LocalPath = Annotated[Path, AfterValidator(_absolute_path)]
# A local folder (made absolute) or an object-store URI (``s3://bucket/lake``, kept as given).
Location = Annotated[str, AfterValidator(_absolute_unless_uri)]
UtcInstant = Annotated[dt.datetime, AfterValidator(_utc)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class SparkSettings(_Section):
    master: str = "local[*]"
    # A folder of pre-fetched jars (air-gapped registries). When set, nothing is fetched.
    jar_dir: LocalPath | None = None
    # Where `mvn` puts the Delta jars it fetches from Maven Central.
    jar_cache: LocalPath = Field(default_factory=lambda: default_cache_dir() / "jars")
    delta_version: str = "3.3.2"
    scala_version: str = "2.12"
    shuffle_partitions: int = Field(default=4, ge=1)
    driver_memory: str = "2g"
    # Photos per Arrow batch handed to a Python worker: bounds worker memory on big photos.
    photos_per_arrow_batch: int = Field(default=16, ge=1)
    extra_conf: dict[str, str] = Field(default_factory=dict)
    java_options: str = ""  # for the driver's JVM (local mode: all of Spark), after dedup's
    # Spark's s3a file system (hadoop-aws and the AWS SDK bundle it was built against) on the
    # classpath: None adds it when the lake is an s3:// location. Its versions follow the
    # Hadoop that pyspark ships (3.3.4 in pyspark 3.5).
    s3a_jars: bool | None = None
    hadoop_aws_version: str = "3.3.4"
    aws_sdk_bundle_version: str = "1.12.262"


class ManifestSettings(_Section):
    allow_absolute_paths: bool = False
    allow_uris: bool = False
    # The window a captured_at must fall in: from this instant to the batch's first stage run
    # plus ``capture_ahead_hours`` (clock skew between a centre and the registry). A row outside
    # it is invalid_row: a capture from 2999 is a typo, not a person.
    earliest_capture: UtcInstant = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
    capture_ahead_hours: float = Field(default=24.0, ge=0)


class ImagingSettings(_Section):
    max_file_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    # Decompression-bomb guard: checked on the header, before any pixel is decoded.
    max_pixels: int = Field(default=50_000_000, ge=1)
    min_side: int = Field(default=80, ge=1)
    # Photos are downscaled to this long side for detection only; alignment uses full pixels.
    detection_max_side: int = Field(default=1024, ge=160)
    # A photo read (stat, open, read) that has not finished after this long is rejected as
    # photo_unreadable: a stalled network mount costs one row, not the night.
    read_timeout_s: float = Field(default=30.0, gt=0)


class DetectionSettings(_Section):
    upsample: int = Field(default=1, ge=0, le=3)
    min_score: float = 0.0
    min_face_px: int = Field(default=60, ge=1)


class QualitySettings(_Section):
    min_inter_eye_px: float = 30.0
    min_sharpness: float = 22.0
    min_brightness: float = 50.0
    max_brightness: float = 215.0
    max_clipped_fraction: float = Field(default=0.2, ge=0, le=1)
    min_detector_score: float = 0.3
    max_abs_yaw_deg: float = 35.0
    max_abs_roll_deg: float = 30.0
    # Share of the detected box allowed to lie outside the photo (a face cut by the frame).
    max_box_outside_fraction: float = Field(default=0.05, ge=0, le=1)


class ModelSpec(_Section):
    """A face model in the registry: its ONNX graph, the chip it expects and its output.

    The stage job reads ``alignment`` (which chip to cut); the embedder reads the rest. Pixels
    reach the graph as ``(pixel - mean[c]) * scale[c]`` in ``colour_order``, laid out as
    ``layout``. An ArcFace-style model is registered the same way, e.g.
    ``onnx: /models/w600k_r50.onnx, input_size: 112, mean: [127.5, 127.5, 127.5],
    scale: [0.0078125, 0.0078125, 0.0078125], alignment: arcface-112, dimension: 512``.
    """

    alignment: str
    dimension: int = Field(ge=1)
    # None: the built-in model's export in the cache (``dedup model export-dlib`` writes it).
    onnx: LocalPath | None = None
    input_size: int = Field(default=150, ge=16)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    colour_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # Whether the graph may run in half precision on a GPU (TensorRT / CUDA fp16).
    fp16_allowed: bool = True
    # The genuine scores' lower quantile (``search.genuine_quantile``) before any adjudicated
    # duplicate says better: the floor of the band where the gallery index must reach its
    # target recall. None: unknown until adjudicated duplicates are there, so a gallery search
    # then holds its index to the review threshold instead.
    genuine_floor: float | None = Field(default=None, gt=-1.0, lt=1.0)


DLIB_MODEL_ID = "dlib-resnet-v1"


def default_model_path(model_id: str) -> Path:
    return default_cache_dir() / "models" / f"{model_id}.onnx"


def _default_models() -> dict[str, ModelSpec]:
    # dlib's input layer: per-channel means of its training set, then division by 256.
    return {
        DLIB_MODEL_ID: ModelSpec(
            alignment="dlib-150",
            dimension=128,
            input_size=150,
            mean=(122.782, 117.001, 104.298),
            scale=(1 / 256, 1 / 256, 1 / 256),
            # Same person 0.939 to 0.99 on the test portraits and their re-captures.
            genuine_floor=0.93,
        )
    }


class MatchingSettings(_Section):
    # Cosine between unit-length templates above which a pair goes to an adjudicator. 0.90 sits
    # between what dlib's model gives on the test portraits: same person 0.94 to 0.99, different
    # people at most 0.84. The gallery issue replaces it with a threshold calibrated to a target
    # false-positive identification rate at the gallery's size.
    review_threshold: float = Field(default=0.90, gt=-1.0, lt=1.0)


class MetricsSettings(_Section):
    """Where batch jobs publish their metrics (``dedup.observability.job_metrics``); neither
    set: nowhere."""

    # Base URL of a Prometheus Pushgateway, e.g. http://pushgateway:9091.
    pushgateway: str | None = None
    # A folder node_exporter's textfile collector reads.
    textfile_dir: LocalPath | None = None
    push_timeout_s: float = Field(default=10.0, gt=0)
    # Days a batch's groups stay published (``dedup.observability.retention``): above the
    # drift alert's 30, which reads a batch's figures for 30 days after its match.
    retention_days: int = Field(default=35, ge=1)


class SearchSettings(_Section):
    """Gallery search: which engine, its knobs, the recall audit, and the cost model's rates."""

    engine: Literal["auto", "exact", "ivfpq"] = "auto"
    # Where the exact sweep runs: "auto" takes a GPU (faiss.knn_gpu, fp16) where FAISS sees one.
    device: Literal["auto", "cpu", "gpu"] = "auto"
    k: int = Field(default=10, ge=1)
    # Lists each probe visits. None: the gallery's own operating point, the smallest nprobe
    # whose recall, as measured on the gallery's templates and recorded in its manifest,
    # reaches ``target_recall`` in the genuine band (``dedup.gallery.recall``).
    nprobe: int | None = Field(default=None, ge=1)
    # Compressed-domain candidates per shard re-scored exactly: at 10 M, 300 kept a planted
    # duplicate near the threshold that 100 lost among impostors' approximate scores.
    shortlist: int = Field(default=300, ge=1)
    # Recall the approximate search must reach in the genuine band (at and above the genuine
    # scores' ``genuine_quantile``, from adjudicated duplicates once there are
    # ``genuine_min_duplicates``, from the model's ``genuine_floor`` before).
    target_recall: float = Field(default=0.995, gt=0, le=1)
    genuine_quantile: float = Field(default=0.01, gt=0, lt=0.5)
    genuine_min_duplicates: int = Field(default=30, ge=1)
    # Share of probes of an approximate search that are also searched exactly, and the recall
    # in the genuine band below which the batch is searched again (a higher nprobe that the
    # gallery measured to reach the target, or the exact sweep).
    audit_fraction: float = Field(default=0.01, ge=0, le=1)
    recall_floor: float = Field(default=0.99, ge=0, le=1)
    # Rates the cost model uses (measured by benchmarks/gallery.py; see docs/benchmarks.md).
    exact_gflops_cpu: float = Field(default=100.0, gt=0)
    exact_gflops_gpu: float = Field(default=400_000.0, gt=0)
    # Fast-scan codes at N = 10 M on 2 cores: 0.59 ms a probe at nprobe 1,024 (204 k codes),
    # 1.17 ms at 3,072 (612 k codes), so about 1.4 ns a code.
    ivf_ns_per_code: float = Field(default=1.4, gt=0)
    # Fixed cost of one probe in IVF-PQ (fan-out, merging, gathering the shortlist's full
    # vectors for re-scoring): what remains of the 0.59 ms above after the codes and the
    # ranking of 50,176 centroids, about 0.2 ms.
    ivf_us_per_probe: float = Field(default=220.0, gt=0)


class EmbedSettings(_Section):
    """How templates are computed: ONNX Runtime sessions and the Ray actor pool."""

    batch_size: int = Field(default=64, ge=1)
    # "auto": CUDA/TensorRT when onnxruntime-gpu and a GPU are present, else the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Threads of one ONNX Runtime session; None lets ONNX Runtime use every core.
    intra_op_threads: int | None = Field(default=None, ge=1)
    inter_op_threads: int = Field(default=1, ge=1)
    # Ray: actors in the pool (None: one per GPU, else one per CPU / cpus_per_actor).
    actors: int | None = Field(default=None, ge=1)
    cpus_per_actor: int = Field(default=1, ge=1)
    ray_address: str | None = None


class AdjudicationSettings(_Section):
    """The review service (``dedup serve``): its database, leases, sessions and safeguards."""

    # SQLAlchemy URL. None: an SQLite file ``adjudication.sqlite`` in the lake folder.
    # Production: ``postgresql+psycopg://user@host/dedup``.
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # How long a claim holds a case before it returns to the queue.
    lease_minutes: float = Field(default=20.0, gt=0)
    session_idle_minutes: float = Field(default=15.0, gt=0)
    session_absolute_hours: float = Field(default=8.0, gt=0)
    # Cookies are sent over HTTPS only (browsers also accept them on http://localhost).
    secure_cookies: bool = True
    # Automation bias: scores stay hidden until the adjudicator records a first judgement.
    hide_scores_until_judgement: bool = True
    # Failed logins allowed per account before it is locked for ``lockout_minutes`` (doubling).
    max_failed_logins: int = Field(default=5, ge=1)
    lockout_minutes: float = Field(default=5.0, gt=0)
    # Login attempts per client address per minute, whatever the account (an office behind
    # one address logs in together at shift start; accounts lock on their own failures).
    logins_per_client_per_minute: int = Field(default=120, ge=1)
    # Largest image accepted on import (photo or chip), in bytes.
    max_image_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Identity provider: "local" (argon2 + TOTP). An OIDC provider plugs in behind the same seam.
    identity_provider: Literal["local"] = "local"
    # The batch reports the operator page links (``<lake>/reports``; ``dedup serve`` fills it
    # in from the lake when unset). None: no reports shown.
    reports_dir: LocalPath | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEDUP_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    lake: Location = "lake"
    # The gallery's root (versions, CURRENT): a local folder or an s3:// prefix (store: ``s3``).
    gallery: Location = "gallery"
    # Local copies of an s3:// gallery's files (as big as its versions); None: <cache>/gallery.
    gallery_cache: LocalPath | None = None
    # Where library logs (spark.log, ray.log) go. None: each job's work folder in a local
    # lake; under the cache (``<cache>/logs/<job>/<batch>``) for an s3:// lake.
    log_dir: LocalPath | None = None
    model: str = DLIB_MODEL_ID
    models: dict[str, ModelSpec] = Field(default_factory=_default_models)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    manifest: ManifestSettings = Field(default_factory=ManifestSettings)
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    matching: MatchingSettings = Field(default_factory=MatchingSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    adjudication: AdjudicationSettings = Field(default_factory=AdjudicationSettings)

    @model_validator(mode="after")
    def _model_is_registered(self) -> Settings:
        if self.model not in self.models:
            raise ValueError(f"model {self.model!r} is not in models ({sorted(self.models)})")
        return self

    @property
    def model_spec(self) -> ModelSpec:
        return self.models[self.model]

    def model_path(self, model_id: str | None = None) -> Path:
        """Where the ONNX graph of a registered model is (the current model by default)."""
        model_id = model_id or self.model
        return self.models[model_id].onnx or default_model_path(model_id)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    def adjudication_database_url(self) -> str:
        """The review service's database: the configured URL, or SQLite in the lake folder."""
        url = self.adjudication.database_url
        if url is None and is_uri(self.lake):
            raise ConfigError(
                f"the lake {self.lake} is an object store, which cannot hold the review "
                "database: set adjudication.database_url (PostgreSQL in production)"
            )
        return url or f"sqlite:///{Path(self.lake).resolve() / 'adjudication.sqlite'}"

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"settings file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"settings file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"settings file {path} must hold a mapping at the top level")
    return loaded


def load_settings(config: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read and validate the settings once; raise ``ConfigError`` naming each bad field.

    The YAML file sits below the environment, so its values are passed as defaults that
    environment variables can still replace: we merge the YAML under explicit overrides and
    let pydantic-settings lay the environment over the YAML by reading env for any key the
    overrides leave unset.
    """
    path = config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    from_file = _read_yaml(path) if path else {}
    try:
        env_only = Settings()  # environment over defaults
        env_set = env_only.model_dump(exclude_unset=True)
        values = _deep_merge(_deep_merge(from_file, env_set), overrides or {})
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
