"""Tekton's terminal UI: a Textual client of the REST API and the event stream.

`tui.main.tui_run(url, token)` is the entry point (`python -m tui`); only `tui.local`
imports Django, to find or start a server of the local install.
"""
