"""Ray-facing stage wrappers: each declares its resources and maps rows with plain functions.

Stage code never imports Ray; ``pipeline.graph`` turns a ``StageSpec`` into Ray Data calls.
"""
