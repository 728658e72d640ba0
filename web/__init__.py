"""The clinicians' and operators' web page and the JSON API; identity, sessions, permissions.

Reads and writes the ledger only through `ledger/`; every asset is served from this package.
"""
