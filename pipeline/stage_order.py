"""The pipeline, as one ordered list of stages. Adding a stage is one entry here.

Each stage declares its config sections, placement and fields (``stages.base.Stage``);
``pipeline.config`` composes the config from these declarations and ``pipeline.graph``
builds the Ray Data graph from the enabled ones, in this order.
"""

from __future__ import annotations

from stages.base import Stage
from stages.decode import DecodeStage
from stages.diarize import DiarizeStage
from stages.enhance import EnhanceStage
from stages.fingerprint import FingerprintStage
from stages.language_id import LanguageIdStage
from stages.quality import QualityStage
from stages.synth_prepare import SynthPrepareStage
from stages.synth_speak import SynthSpeakStage
from stages.synth_write import SynthWriteStage
from stages.text_filter import TextFilterStage
from stages.transcribe import TranscribeStage
from stages.vad_segment import VadSegmentStage
from stages.write import WriteStage

PIPELINE: tuple[type[Stage], ...] = (
    DecodeStage,
    EnhanceStage,
    VadSegmentStage,
    DiarizeStage,
    LanguageIdStage,
    TranscribeStage,
    TextFilterStage,
    QualityStage,
    WriteStage,
)

# Runs before the graph, over every discovered source (content hashes for the ledger plan).
PRE_GRAPH: tuple[type[Stage], ...] = (FingerprintStage,)

# `refinery synth run`: dialogues in, spoken dialogue shards out (the same graph, ledger and lock).
SYNTHESIS: tuple[type[Stage], ...] = (
    SynthPrepareStage,
    SynthSpeakStage,
    SynthWriteStage,
)
