"""The books: what each request used and cost, as one record per finished upstream attempt.

`record.UsageRecord` is the value every consumer of a finished request reads: the usage
store (one row each), the daily log file, the stderr access log and the metrics. It is
built once, where an attempt ends (server/gateway.py), and handed to every `RecordSink`.
"""
