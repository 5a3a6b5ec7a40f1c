"""sockspec: a conformance suite for CloudHash/1 servers and clients."""
