"""Data contracts (spans, ids, Arrow schemas) and the on-disk corpus: shards, ledger, lock."""
