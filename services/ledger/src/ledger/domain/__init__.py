"""The ledger's rules as pure functions over plain values: no I/O, no storage, no HTTP."""
