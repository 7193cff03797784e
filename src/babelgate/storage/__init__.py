"""Embedded state, SQL only: SQLite by default. `responses` keeps the turns of Responses API
conversations for `previous_response_id`; `migrations` brings any database to the current
schema. What the rows mean on the wire is server/ and protocols/ business."""
