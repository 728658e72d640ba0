"""The benchmark suite (`make bench` = `python -m bench`): the pipeline against its limits.

Stages, each in its own module: `ceiling` (the model's batched forward speed), `pipeline`
(10,000 scans end to end, SQLite and PostgreSQL), `naive` (the tutorial design, for scale),
`latency` (urgent escalation and stat time-to-result behind a backlog); `report` prints the
table and writes bench/results.json. `environment` holds the throwaway servers, model and scans.
"""
