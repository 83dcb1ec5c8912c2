"""The single-prompt front door (issue 12): one prompt to one backend, or along a chain of
models picked by the prompt's intent, or through a planner -> coder -> reviewer chain, all
on Tekton's provider layer (the Router: routing, retries, recording, pricing), and every
invocation written to a memory journal (journal.py), redacted first.

No Django here: the CLI and the API adapters (the `prompts` app) pass settings in.
"""
