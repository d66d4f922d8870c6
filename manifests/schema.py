"""Arrow schemas of the segment shards and the ledger, and the Hugging Face features metadata.

Column names and meanings follow DESIGN.md (the full table: docs/columns.md). One deliberate deviation in type:
``models`` is a list of {stage, model} structs rather than an Arrow map, because
`datasets` has no feature type for Arrow maps and would refuse the whole shard.
"""

from __future__ import annotations

import json

import pyarrow as pa

from manifests.planned_segment import MODEL_TYPE, SEGMENT_FIELDS, WORD_TYPE

AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

SEGMENT_SCHEMA = pa.schema(
    [
        ("segment_id", pa.string()),
        ("recording_id", pa.string()),
        ("source_uri", pa.string()),
        ("corpus", pa.string()),
        ("run_id", pa.string()),
        ("config_hash", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("duration", pa.float64()),
        ("speaker", pa.string()),
        ("overlap_ratio", pa.float64()),
        ("language", pa.string()),
        ("language_prob", pa.float64()),
        ("text", pa.string()),
        ("words", pa.list_(WORD_TYPE)),
        ("kept", pa.bool_()),
        ("drop_reason", pa.string()),
        ("audio", AUDIO_TYPE),
        ("audio_enhanced", AUDIO_TYPE),
        ("sample_rate", pa.int32()),
        ("snr_db", pa.float64()),
        ("dnsmos_ovrl", pa.float64()),
        ("dnsmos_sig", pa.float64()),
        ("dnsmos_bak", pa.float64()),
        ("models", pa.list_(MODEL_TYPE)),
    ]
)
# The per-segment figures of the stages (language runner-up, ASR and filter figures), one
# column each, named as in ``PlannedSegment``; documented in docs/columns.md.
FIGURE_COLUMNS = tuple(name for name, _ in SEGMENT_FIELDS if name not in SEGMENT_SCHEMA.names)
SEGMENT_SCHEMA = pa.schema(list(SEGMENT_SCHEMA) + [pa.field(name, t) for name, t in SEGMENT_FIELDS
                                                   if name in FIGURE_COLUMNS])

AUDIO_COLUMNS = ("audio", "audio_enhanced")

LEDGER_SCHEMA = pa.schema(
    [
        ("source_uri", pa.string()),
        ("sha256", pa.string()),
        ("size_bytes", pa.int64()),
        ("recording_id", pa.string()),
        ("corpus", pa.string()),
        ("run_id", pa.string()),
        ("config_hash", pa.string()),
        ("status", pa.string()),  # done | failed | skipped | retired (manifests.retire)
        ("error", pa.string()),
        ("duration_s", pa.float64()),
        ("segments", pa.int32()),
        ("segments_kept", pa.int32()),
        ("kept_seconds", pa.float64()),
        ("speakers", pa.int32()),
        ("container", pa.string()),
        ("codec", pa.string()),
        ("source_sample_rate", pa.int32()),
        ("source_channels", pa.int32()),
        ("warning", pa.string()),
        ("shard_paths", pa.list_(pa.string())),  # relative to the corpus directory
        ("staged_paths", pa.list_(pa.string())),  # where the shards waited before the commit
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("source_meta", pa.string()),  # JSON of the fetch sidecar (<file>.source.json), null when none
        # The Ray node each stage ran this source on (hex node ids); empty for rows that never
        # entered the graph (skipped, unreadable). Added after the first release: older commits read null.
        ("worker_nodes", pa.list_(pa.struct([("stage", pa.string()), ("node", pa.string())]))),
    ]
)

# ``retired``: a row `refinery manifest retire` adds for a done row whose content was replaced at its
# path; it names that row by recording_id and run_id, whose segments readers then leave out.
RETIRED = "retired"
STATUSES = ("done", "failed", "skipped", RETIRED)

# A synthesis corpus (``refinery synth run``): one row per turn of each dialogue, system turns
# included (text only). A synthesis ledger row is a dialogue: ``source_uri`` is ``FILE#L<line>``,
# ``sha256`` the dialogue's content hash, ``recording_id`` its dialogue id, ``segments`` its turns,
# ``segments_kept`` the kept spoken turns, ``kept_seconds`` their audio seconds.
DIALOGUE_SCHEMA = pa.schema(
    [
        ("dialogue_id", pa.string()),
        ("turn_index", pa.int32()),
        ("role", pa.string()),  # system | user | assistant
        ("text", pa.string()),  # the written text (after rewriting, when on)
        ("spoken_text", pa.string()),  # the spoken form the TTS read (numbers, units... in words)
        ("language", pa.string()),
        ("audio", AUDIO_TYPE),  # FLAC; null for system turns and turns not spoken
        ("sample_rate", pa.int32()),
        ("duration", pa.float64()),
        ("voice_id", pa.string()),  # the target voice (library voice or assistant voice)
        ("tts_voice", pa.string()),  # the TTS backend's own voice that spoke before conversion
        ("tts_backend", pa.string()),
        ("vc_backend", pa.string()),  # none: not converted (no target, or the conversion was not used)
        ("vc_note", pa.string()),  # why a conversion was not used
        ("style", pa.string()),
        ("seed", pa.int64()),
        ("attempts", pa.int32()),
        ("asr_text", pa.string()),
        ("asr_error", pa.float64()),  # WER (en) or CER (zh) of asr_text against spoken_text
        ("speaker_similarity", pa.float64()),  # cosine to the target voice, after conversion
        ("speaker_similarity_before_vc", pa.float64()),  # the same for the TTS output before conversion
        ("dnsmos_ovrl", pa.float64()),
        ("chars_per_second", pa.float64()),
        ("clipping_ratio", pa.float64()),
        ("kept", pa.bool_()),
        ("drop_reason", pa.string()),
        ("text_reasons", pa.list_(pa.string())),  # what text preparation changed (normalised, rewritten, split)
        ("dialogue_kept", pa.bool_()),
        ("dialogue_form", pa.string()),  # speech (every turn spoken) | audio_to_text (user audio, assistant text)
        ("dialogue_drop_reason", pa.string()),
        ("source_uri", pa.string()),
        ("corpus", pa.string()),
        ("run_id", pa.string()),
        ("config_hash", pa.string()),
        ("models", pa.list_(MODEL_TYPE)),
    ]
)


def _hf_feature(t: pa.DataType) -> dict:
    if t.equals(AUDIO_TYPE):
        return {"_type": "Audio"}
    if pa.types.is_list(t):
        return {"_type": "List", "feature": _hf_feature(t.value_type)}
    if pa.types.is_struct(t):
        return {t.field(i).name: _hf_feature(t.field(i).type) for i in range(t.num_fields)}
    names = {pa.string(): "string", pa.float64(): "float64", pa.int32(): "int32", pa.int64(): "int64",
             pa.bool_(): "bool", pa.binary(): "binary"}
    for arrow_type, dtype in names.items():
        if t.equals(arrow_type):
            return {"_type": "Value", "dtype": dtype}
    raise TypeError(f"no Hugging Face feature for Arrow type {t}")


def with_hf_metadata(schema: pa.Schema) -> pa.Schema:
    """``schema`` carrying `datasets` features, so its audio columns load as Audio features."""
    features = {f.name: _hf_feature(f.type) for f in schema}
    meta = {"huggingface": json.dumps({"info": {"features": features}})}
    return schema.with_metadata(meta)


def segment_schema_with_hf_metadata() -> pa.Schema:
    """The segment schema carrying `datasets` features, so `audio` loads as an Audio feature."""
    return with_hf_metadata(SEGMENT_SCHEMA)

# The fields of one turn as it travels between the synthesis stages (a list<struct> column
# ``turns``): the per-turn columns of ``DIALOGUE_SCHEMA``, audio as bare FLAC bytes.
TURN_COLUMNS = ("turn_index", "role", "text", "spoken_text", "language", "audio", "duration", "voice_id", "tts_voice",
                "tts_backend", "vc_backend", "vc_note", "style", "seed", "attempts", "asr_text", "asr_error",
                "speaker_similarity", "speaker_similarity_before_vc", "dnsmos_ovrl", "chars_per_second",
                "clipping_ratio", "kept", "drop_reason", "text_reasons")
TURN_TYPE = pa.struct([(name, pa.binary() if name == "audio" else DIALOGUE_SCHEMA.field(name).type)
                       for name in TURN_COLUMNS])
