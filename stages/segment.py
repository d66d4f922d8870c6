"""The segmentation section shared by both segmenters (segment merging, DESIGN stage 6)."""

from __future__ import annotations

from diarization.segment_merge import SegmentMergeParams
from stages.base import Section


class SegmentSection(SegmentMergeParams, Section):
    """Segment merging: shared by VAD segmentation and diarization."""
