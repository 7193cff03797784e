"""Embedded state: SQLite by default. `responses` keeps Responses API conversations for
`previous_response_id`; `conversation` connects it to the request path."""
