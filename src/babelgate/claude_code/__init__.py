"""The local Claude Code CLI as a backend (`type: claude-code` providers).

- `provider`: the provider type: its settings, how the CLI is started, its process pool.
- `process`, `pool`: one CLI process (stream-json in and out), and the bounded set of them.
- `events`: the CLI's output lines as canonical stream events; `chunking` cuts its text.
- `prompt`: a canonical request as the CLI's input (the new turn, or a one-off's history).
- `store`, `projects`: sessions and projects, kept in the gateway's database (their
  endpoints, /v1/sessions and /v1/projects, are server/sessions_api.py).
- `runtime`: one request's turn, from session to process to events.
"""
