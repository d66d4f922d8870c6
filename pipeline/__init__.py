"""Configuration, run orchestration (the Ray Data graph) and the `refinery` command line."""
