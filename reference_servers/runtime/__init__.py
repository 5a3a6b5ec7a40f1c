"""The IO that every architecture shares: sockets, TLS, signals, stores.

The architecture modules one level up hold only their concurrency pattern.
"""
