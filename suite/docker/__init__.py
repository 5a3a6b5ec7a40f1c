"""Docker as a place to run targets: images built without a registry,
labelled containers and networks, and a sweep that leaves nothing behind."""
