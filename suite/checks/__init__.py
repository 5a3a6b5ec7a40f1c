"""The conformance checks, one module per area of PROTOCOL.md.

Each check is named after the behaviour it expects, carries the IDs of the
requirements it judges, and reads as the spec: send these bytes, expect those.
"""
