"""The database is the ledger: engine and migrations, the scan and study lifecycles, results,
the worklist, the outbox rows, the reads, and the reconciler's plan."""
