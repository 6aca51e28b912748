"""ledger: the reference double-entry payments ledger built on stalwart's public API."""
