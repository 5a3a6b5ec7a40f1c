"""CloudHash/1 reference servers: one protocol core, one module per architecture."""
