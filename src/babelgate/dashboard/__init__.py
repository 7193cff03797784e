"""The dashboard's files (static/): plain HTML, CSS and JavaScript served at /ui by
server/dashboard.py. Nothing is built or fetched: what is in static/ is what the browser gets.
"""
