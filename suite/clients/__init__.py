"""Client conformance: the client under test, where it runs, and the
adversarial servers and certificates the suite puts in front of it."""
