"""The database is the ledger: engine and migrations, scan lifecycle, worklist, reads."""
