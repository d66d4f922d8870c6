"""Stages: one module each, declaring name, config sections, placement and the row fields it
reads and writes (``stages.base.Stage``), and calling the logic packages for the work.

Stage code never imports Ray; ``pipeline.graph`` turns the declarations into Ray Data calls.
"""
